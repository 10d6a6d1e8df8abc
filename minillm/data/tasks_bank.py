"""Curated knowledge bank for the `knowledge` task category (English and Chinese)."""

from __future__ import annotations

CAPITALS = """France|Paris|法国|巴黎
Germany|Berlin|德国|柏林
Italy|Rome|意大利|罗马
Spain|Madrid|西班牙|马德里
Portugal|Lisbon|葡萄牙|里斯本
United Kingdom|London|英国|伦敦
Ireland|Dublin|爱尔兰|都柏林
Netherlands|Amsterdam|荷兰|阿姆斯特丹
Belgium|Brussels|比利时|布鲁塞尔
Austria|Vienna|奥地利|维也纳
Switzerland|Bern|瑞士|伯尔尼
Poland|Warsaw|波兰|华沙
Czech Republic|Prague|捷克|布拉格
Hungary|Budapest|匈牙利|布达佩斯
Greece|Athens|希腊|雅典
Sweden|Stockholm|瑞典|斯德哥尔摩
Norway|Oslo|挪威|奥斯陆
Denmark|Copenhagen|丹麦|哥本哈根
Finland|Helsinki|芬兰|赫尔辛基
Iceland|Reykjavik|冰岛|雷克雅未克
Russia|Moscow|俄罗斯|莫斯科
Ukraine|Kyiv|乌克兰|基辅
Romania|Bucharest|罗马尼亚|布加勒斯特
Bulgaria|Sofia|保加利亚|索非亚
Serbia|Belgrade|塞尔维亚|贝尔格莱德
Croatia|Zagreb|克罗地亚|萨格勒布
Turkey|Ankara|土耳其|安卡拉
Egypt|Cairo|埃及|开罗
Kenya|Nairobi|肯尼亚|内罗毕
Ethiopia|Addis Ababa|埃塞俄比亚|亚的斯亚贝巴
Nigeria|Abuja|尼日利亚|阿布贾
Ghana|Accra|加纳|阿克拉
Morocco|Rabat|摩洛哥|拉巴特
Algeria|Algiers|阿尔及利亚|阿尔及尔
Tunisia|Tunis|突尼斯|突尼斯市
Senegal|Dakar|塞内加尔|达喀尔
Tanzania|Dodoma|坦桑尼亚|多多马
Uganda|Kampala|乌干达|坎帕拉
China|Beijing|中国|北京
Japan|Tokyo|日本|东京
South Korea|Seoul|韩国|首尔
Mongolia|Ulaanbaatar|蒙古|乌兰巴托
India|New Delhi|印度|新德里
Pakistan|Islamabad|巴基斯坦|伊斯兰堡
Bangladesh|Dhaka|孟加拉国|达卡
Nepal|Kathmandu|尼泊尔|加德满都
Thailand|Bangkok|泰国|曼谷
Vietnam|Hanoi|越南|河内
Laos|Vientiane|老挝|万象
Cambodia|Phnom Penh|柬埔寨|金边
Malaysia|Kuala Lumpur|马来西亚|吉隆坡
Indonesia|Jakarta|印度尼西亚|雅加达
Philippines|Manila|菲律宾|马尼拉
Iran|Tehran|伊朗|德黑兰
Iraq|Baghdad|伊拉克|巴格达
Saudi Arabia|Riyadh|沙特阿拉伯|利雅得
Israel|Jerusalem|以色列|耶路撒冷
Jordan|Amman|约旦|安曼
Afghanistan|Kabul|阿富汗|喀布尔
Kazakhstan|Astana|哈萨克斯坦|阿斯塔纳
Uzbekistan|Tashkent|乌兹别克斯坦|塔什干
United States|Washington|美国|华盛顿
Canada|Ottawa|加拿大|渥太华
Mexico|Mexico City|墨西哥|墨西哥城
Cuba|Havana|古巴|哈瓦那
Brazil|Brasilia|巴西|巴西利亚
Argentina|Buenos Aires|阿根廷|布宜诺斯艾利斯
Chile|Santiago|智利|圣地亚哥
Peru|Lima|秘鲁|利马
Colombia|Bogota|哥伦比亚|波哥大
Venezuela|Caracas|委内瑞拉|加拉加斯
Australia|Canberra|澳大利亚|堪培拉
New Zealand|Wellington|新西兰|惠灵顿"""

ELEMENTS = """H|Hydrogen|氢|1
He|Helium|氦|2
Li|Lithium|锂|3
Be|Beryllium|铍|4
B|Boron|硼|5
C|Carbon|碳|6
N|Nitrogen|氮|7
O|Oxygen|氧|8
F|Fluorine|氟|9
Ne|Neon|氖|10
Na|Sodium|钠|11
Mg|Magnesium|镁|12
Al|Aluminium|铝|13
Si|Silicon|硅|14
P|Phosphorus|磷|15
S|Sulfur|硫|16
Cl|Chlorine|氯|17
Ar|Argon|氩|18
K|Potassium|钾|19
Ca|Calcium|钙|20
Ti|Titanium|钛|22
Cr|Chromium|铬|24
Mn|Manganese|锰|25
Fe|Iron|铁|26
Co|Cobalt|钴|27
Ni|Nickel|镍|28
Cu|Copper|铜|29
Zn|Zinc|锌|30
Br|Bromine|溴|35
Kr|Krypton|氪|36
Ag|Silver|银|47
Sn|Tin|锡|50
I|Iodine|碘|53
Xe|Xenon|氙|54
W|Tungsten|钨|74
Pt|Platinum|铂|78
Au|Gold|金|79
Hg|Mercury|汞|80
Pb|Lead|铅|82
U|Uranium|铀|92
Sc|Scandium|钪|21
V|Vanadium|钒|23
Ga|Gallium|镓|31
Ge|Germanium|锗|32
As|Arsenic|砷|33
Se|Selenium|硒|34
Rb|Rubidium|铷|37
Sr|Strontium|锶|38
Zr|Zirconium|锆|40
Mo|Molybdenum|钼|42
Pd|Palladium|钯|46
Cd|Cadmium|镉|48
Sb|Antimony|锑|51
Cs|Caesium|铯|55
Ba|Barium|钡|56
Nd|Neodymium|钕|60
Ir|Iridium|铱|77
Bi|Bismuth|铋|83
Rn|Radon|氡|86
Ra|Radium|镭|88
Pu|Plutonium|钚|94"""

WORKS = """Hamlet|William Shakespeare|哈姆雷特|莎士比亚
Romeo and Juliet|William Shakespeare|罗密欧与朱丽叶|莎士比亚
Pride and Prejudice|Jane Austen|傲慢与偏见|简·奥斯汀
War and Peace|Leo Tolstoy|战争与和平|托尔斯泰
Anna Karenina|Leo Tolstoy|安娜·卡列尼娜|托尔斯泰
Crime and Punishment|Fyodor Dostoevsky|罪与罚|陀思妥耶夫斯基
Don Quixote|Miguel de Cervantes|堂吉诃德|塞万提斯
Les Miserables|Victor Hugo|悲惨世界|雨果
Faust|Goethe|浮士德|歌德
The Old Man and the Sea|Ernest Hemingway|老人与海|海明威
One Hundred Years of Solitude|Gabriel Garcia Marquez|百年孤独|马尔克斯
1984|George Orwell|一九八四|奥威尔
Animal Farm|George Orwell|动物农场|奥威尔
Oliver Twist|Charles Dickens|雾都孤儿|狄更斯
Jane Eyre|Charlotte Bronte|简·爱|夏洛蒂·勃朗特
Wuthering Heights|Emily Bronte|呼啸山庄|艾米莉·勃朗特
The Divine Comedy|Dante|神曲|但丁
Dream of the Red Chamber|Cao Xueqin|红楼梦|曹雪芹
Journey to the West|Wu Cheng'en|西游记|吴承恩
Romance of the Three Kingdoms|Luo Guanzhong|三国演义|罗贯中
Water Margin|Shi Nai'an|水浒传|施耐庵
The True Story of Ah Q|Lu Xun|阿Q正传|鲁迅
Camel Xiangzi|Lao She|骆驼祥子|老舍
Teahouse|Lao She|茶馆|老舍
The Art of War|Sun Tzu|孙子兵法|孙武
Records of the Grand Historian|Sima Qian|史记|司马迁
On the Origin of Species|Charles Darwin|物种起源|达尔文
The Wealth of Nations|Adam Smith|国富论|亚当·斯密
The Little Prince|Antoine de Saint-Exupery|小王子|圣埃克苏佩里
Mona Lisa|Leonardo da Vinci|蒙娜丽莎|达·芬奇
The Starry Night|Vincent van Gogh|星夜|梵高
The Magic Flute|Mozart|魔笛|莫扎特
Moonlight Sonata|Beethoven|月光奏鸣曲|贝多芬
Swan Lake|Tchaikovsky|天鹅湖|柴可夫斯基"""

# (question en, answer en, question zh, answer zh)
MISC = """the largest planet in the Solar System|Jupiter|太阳系中最大的行星|木星
the planet closest to the Sun|Mercury|离太阳最近的行星|水星
the planet known as the Red Planet|Mars|被称为红色星球的行星|火星
the planet famous for its bright rings|Saturn|以明亮光环著称的行星|土星
the natural satellite of the Earth|the Moon|地球的天然卫星|月球
the largest ocean on Earth|the Pacific Ocean|地球上最大的海洋|太平洋
the highest mountain on Earth|Mount Everest|地球上最高的山峰|珠穆朗玛峰
the longest river in China|the Yangtze|中国最长的河流|长江
the largest desert in Asia|the Gobi|亚洲最大的沙漠|戈壁沙漠
the largest hot desert in the world|the Sahara|世界上最大的热带沙漠|撒哈拉沙漠
the continent where Egypt lies|Africa|埃及所在的大洲|非洲
the continent where Brazil lies|South America|巴西所在的大洲|南美洲
the largest country by area|Russia|面积最大的国家|俄罗斯
the smallest continent|Australia|面积最小的大洲|大洋洲
the SI unit of force|newton|力的国际单位|牛顿
the SI unit of energy|joule|能量的国际单位|焦耳
the SI unit of power|watt|功率的国际单位|瓦特
the SI unit of electric current|ampere|电流的国际单位|安培
the SI unit of electric resistance|ohm|电阻的国际单位|欧姆
the SI unit of voltage|volt|电压的国际单位|伏特
the SI unit of frequency|hertz|频率的国际单位|赫兹
the SI unit of pressure|pascal|压强的国际单位|帕斯卡
the SI unit of mass|kilogram|质量的国际单位|千克
the SI unit of temperature|kelvin|热力学温度的国际单位|开尔文
the SI unit of amount of substance|mole|物质的量的国际单位|摩尔
the SI unit of luminous intensity|candela|发光强度的国际单位|坎德拉
the SI unit of electric charge|coulomb|电荷量的国际单位|库仑
the boiling point of water at sea level in degrees Celsius|100|海平面上水的沸点（摄氏度）|100
the freezing point of water in degrees Celsius|0|水的冰点（摄氏度）|0
the number of days in a leap year|366|闰年的天数|366
the number of minutes in an hour|60|一小时的分钟数|60
the number of seconds in a day|86400|一天的秒数|86400
the number of centimetres in a metre|100|一米的厘米数|100
the number of grams in a kilogram|1000|一千克的克数|1000
the number of metres in a kilometre|1000|一千米的米数|1000
the number of sides of a hexagon|6|六边形的边数|6
the number of sides of an octagon|8|八边形的边数|8
the sum of the interior angles of a triangle in degrees|180|三角形内角和（度）|180
the number of degrees in a right angle|90|直角的度数|90
the number of planets in the Solar System|8|太阳系行星的数量|8
the number of continents|7|大洲的数量|7
the number of bones in an adult human body|206|成年人全身骨头的数量|206
the number of chromosomes in a human body cell|46|人体体细胞中染色体的数量|46
the number of chambers in the human heart|4|人类心脏的腔室数量|4
the chemical formula of water|H2O|水的化学式|H2O
the chemical formula of carbon dioxide|CO2|二氧化碳的化学式|CO2
the chemical formula of table salt|NaCl|食盐的化学式|NaCl
the gas that plants absorb for photosynthesis|carbon dioxide|植物进行光合作用时吸收的气体|二氧化碳
the most abundant gas in Earth's atmosphere|nitrogen|地球大气中含量最多的气体|氮气
the hardest natural mineral|diamond|天然最硬的矿物|金刚石
the organelle known as the powerhouse of the cell|mitochondrion|被称为细胞动力工厂的细胞器|线粒体
the molecule that carries genetic information|DNA|携带遗传信息的分子|DNA
the largest organ of the human body|skin|人体最大的器官|皮肤
the scientist who proposed the theory of relativity|Albert Einstein|提出相对论的科学家|爱因斯坦
the scientist who formulated the laws of motion and universal gravitation|Isaac Newton|提出运动定律和万有引力定律的科学家|牛顿
the scientist who created the periodic table of elements|Dmitri Mendeleev|编制元素周期表的科学家|门捷列夫
the scientist who discovered penicillin|Alexander Fleming|发现青霉素的科学家|弗莱明
the first person to walk on the Moon|Neil Armstrong|第一个登上月球的人|阿姆斯特朗
the first Chinese astronaut in space|Yang Liwei|第一位进入太空的中国航天员|杨利伟
the inventor of papermaking in the Han dynasty|Cai Lun|汉代改进造纸术的人|蔡伦
the philosopher who wrote the Analects' teachings|Confucius|《论语》记录其言行的思想家|孔子
the author of the Tao Te Ching|Laozi|《道德经》的作者|老子
the speed of light in vacuum in km/s, rounded to thousands|300000|真空中光速约为多少千米每秒（取整到千）|300000
the approximate value of pi to two decimal places|3.14|圆周率保留两位小数|3.14
the gravitational acceleration on Earth in m/s^2 to one decimal|9.8|地球表面重力加速度（m/s²，保留一位小数）|9.8
the number of hours in a week|168|一周的小时数|168
the number of months in a year|12|一年的月数|12
the square root of 144|12|144的平方根|12
the largest mammal|blue whale|最大的哺乳动物|蓝鲸
the fastest land animal|cheetah|陆地上跑得最快的动物|猎豹
the national animal most associated with China|giant panda|最常被视为中国国宝的动物|大熊猫
the longest wall built in ancient China|the Great Wall|中国古代修建的最长城墙|长城
the city where the Forbidden City is located|Beijing|故宫所在的城市|北京
the city where the Eiffel Tower is located|Paris|埃菲尔铁塔所在的城市|巴黎
the country where the pyramids of Giza are|Egypt|吉萨金字塔所在的国家|埃及
the currency of Japan|yen|日本的货币|日元
the currency of the United Kingdom|pound sterling|英国的货币|英镑
the currency of China|renminbi|中国的货币|人民币
the language with the most native speakers|Chinese|母语使用者最多的语言|汉语"""


def _rows(block: str) -> list[list[str]]:
    return [ln.split("|") for ln in block.strip().splitlines()]


def build_bank() -> list[dict]:
    """All facts as dicts `{kind, en: (question subject, answer), zh: (...)}`."""
    facts = []
    for c, cap, zc, zcap in _rows(CAPITALS):
        facts.append({"kind": "capital", "en": (c, cap), "zh": (zc, zcap)})
    for sym, name, zname, num in _rows(ELEMENTS):
        facts.append({"kind": "symbol", "en": (name, sym), "zh": (zname, sym)})
        facts.append({"kind": "atomic", "en": (name, num), "zh": (zname, num)})
    for work, author, zwork, zauthor in _rows(WORKS):
        facts.append({"kind": "author", "en": (work, author), "zh": (zwork, zauthor)})
    for q, a, zq, za in _rows(MISC):
        facts.append({"kind": "misc", "en": (q, a), "zh": (zq, za)})
    return facts


BANK = build_bank()
