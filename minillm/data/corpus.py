"""Deterministic bilingual (Chinese + English) corpus for training the built-in tokenizer.

Everything is expanded from the seed text embedded here with a seeded `random.Random`, so
anyone can rebuild the corpus, and from it the shipped tokenizer in `minillm/assets/tokenizer/`,
without downloads; the same seed gives a byte-identical corpus. The mix: Zipf-weighted word and
character text (merges follow realistic frequencies), templated zh/en sentences, math word
problems with worked answers, arithmetic, chats laid out as ChatML without the special tokens,
JSON and code. Regenerate the shipped tokenizer (identical tokenizer.json on every run) with:

    python -m minillm.tokenizer train --vocab_size 6400 --out_dir minillm/assets/tokenizer

`train` without `--data` builds this corpus (`--seed 0`) in memory; to look at the text:

    python -m minillm.tokenizer corpus --out corpus.txt --seed 0
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from itertools import accumulate

DEFAULT_TARGET_MB = 6.0

# Common Chinese characters and words, and English words, roughly by frequency.
COMMON_CHARS = "".join(
    dict.fromkeys(
        "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发"
        "后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开"
        "但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并"
        "物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先"
        "海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才"
        "结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书"
        "非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张该交规万取拉格望觉术领"
        "共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每济车亲极林服快办议往元英士证近失转"
        "夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团集百需价花党华城石级整府离况亚请技际"
        "约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史委乎查轻易早曾除农找装广显吧"
        "阿李标谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半节土投某"
        "案黑维革划敌致陈律足态护七兴派孩验责营星够章音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察"
        "母京段依批群项故按河米围江织害斗双境客纪采举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐"
        "帝限船脸职速刻乐否刚威毛状率甚独球般普怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血"
        "惊伤素药适波夜省初喜卫源食险待述陆习置居劳财环排福纳欢雷警获模充负云停木游龙树疑层冷洲冲射略范"
        "竟句室异激汉村哈策演简卡罪判担州静退既衣您宗积余痛检差富灵协角占配征修皮挥胜降阶审沉坚善妈刘读"
        "啊超免压银买皇养伊怀执副乱抗犯追帮宣佛岁航优怪香著田铁控税左右份穿艺背阵草脚概恶块顿敢守酒岛托"
        "央户烈洋哥索胡款靠评版宝座释景顾弟登货互付伯慢欧换闻危忙核暗姐介坏讨丽良序升监临亮露永呼味野架"
        "域沙掉括舰鱼杂误湾吉减编楚肯测败屋跑梦散温困剑渐封救贵枪缺楼县尚毫移娘朋画班智亦耳恩短掌恐遗固"
        "席松秘谢鲁遇康虑幸均销钟诗藏赶剧票损忽巨炮旧端探湖录叶春乡附吸予礼港雨呀板庭妇归睛饭额含顺输摇"
        "招婚脱补谓督毒油疗旅泽材灭逐莫笔亡鲜词圣择寻厂睡博勒烟授诺伦岸奥唐卖俄炸载洛健堂旁宫喝借君禁阴"
        "园谋宋避抓荣姑孙逃牙束跳顶玉镇雪午练迫爷篇肉嘴馆遍凡础洞卷坦牛宁纸诸训私庄祖丝翻暴森塔默握戏隐"
        "熟骨访弱蒙歌店鬼软典欲萨伙遭盘爸扩盖弄雄稳忘亿刺拥徒姆杨齐赛趣曲刀床迎冰虚玩析窗醒妻透购替塞努"
        "休虎扬途侵刑绿兄迅套贸毕唯谷轮库迹尤竞街促延震弃甲伟麻川申缓潜闪售灯针哲络抵朱埃抱鼓植纯夏忍页"
        "杰筑折郑贝尊吴秀混臣雅振染盛怒舞圆搞狂措姓残秋培迷诚宽宇猛摆梅毁伸摩盟末乃悲拍丁赵硬麦蒋操阻订"
        "彩抽赞魔纷沿喊违妹浪汇币丰蓝殊献桌啦瓦援译夺汽烧距裁偏符勇触课敬哭懂墙袭召罚厅拜巧侧韩冒债曼融"
        "惯享戴童犹乘挂奖绍厚纵障讯涉彻刊丈爆乌役描洗患妙镜唱烦签仙彼仿倾牌陷鸟轰咱菜闭奋庆泪茶疾缘播朗"
        "杜奶季丹狗尾仪偷奔珠虫驻孔宜艾桥淡翼恨繁寒伴叹旦愈潮粮缩聚径恰挑袋灰捕徐珍幕映裂泰隔启尖忠累炎"
        "暂估泛荒偿横拒瑞忆孤鼻闹羊厉衡胞零穷舍码婆魂灾洪腿胆津俗辩胸晓劲贫仁偶辑邦恢赖圈摸仰润堆碰稍迟"
        "辆废净署壁御奉旋冬矿抬蛋晨伏吹鸡倍糊秦盾杯租骑乏隆诊摄污渡旗甘耐凭扎抢绪粗肩梁幻菲皆碎宙叔岩荡"
        "综爬荷悉返井壮薄悄扫敏碍殖详迪矛允幅撒剩凯颗赏液番箱贴漫酸郎腰舒眉忧浮辛恋餐吓挺励辞键伍峰尺昨"
        "黎辈贯侦滑券崇扰宪绕趋慈乔阅汗枝拖墨胁插箭粉泥氏彭拔骗凤慧媒佩愤扑龄驱惜豪掩兼跃肃帕驶堡届欣惠"
        "册储飘桑闲惨洁踪勃宾频磨递撞拟滚奏巡颜剂绩贡坡瞧截燃焦殿伪柳锁逼颇昏劝呈搜勤戒驾漂饮曹朵仔柔俩"
        "孟腐幼践籍牧凉佳浓芳稿竹腹跌逻垂遵脉貌柏猜惑陶帐饰贷昌叙躺钢沟寄扶铺邓寿惧询汤肥尝匆辉奈扣廷澳"
        "嘛董迁凝慰厌脏腾幽鞋丢埋泉涌辖躲晋紫艰魏吾慌祝邮吐狠鉴械咬邻赤挤弯椅陪割揭悟聪雾锋梯猫祥阔誉筹"
        "丛牵鸣沈阁屈旨袖猎臂蛇贺柱抛鼠琴衰瓶恼燕仲诱池疼卢冠粒遥玄尘抚浅敦纠钻晶峡苍喷耗凌敲菌赔涂粹扁"
        "亏寂煤熊恭湿循暖糖赋抑秩帽宿踏烂侯抖夹肝擦猪炼恒慎搬纽纹玻渔磁铜齿跨押怖漠疲遣兹醉拳弥斜档稀捷"
        "肤疫肿豆削岗晃吞宏肚涨耀扭坛拨沃绘伐堪郭墓雇廉契拼捉覆刷嫌瓜歇雕闷乳串娃唤赢莲桃妥瘦搭赴岳嘉舱"
        "俊址庞耕锐缝悔邀玲惟宅添挖浩羽斤酷祸乙妨贪汪莉悬唇仓轨枚盐览帅庙芬屏寺胖璃愚滴疏萧姿丑劣柯寸扔"
        "盯辱匹俱辨饿蜂腔郁溃谨葛苗肠忌溜鸿爵鹏鹰笼丘桂滋聊挡纲肌壳痕碗穴膀卓贤卧膜毅锦欠函茫昂皱夸豫胃"
        "舌剥傲拾窝携陵棉晴铃填渴吻扮逆脆罩卜炉柴愉绳胎蓄眠竭傻慕奸扇柜悦拦诞饱乾泡贼亭夕爹酬儒姻卵氛泄"
        "杆挨僧蜜吟遂狭肖甜霉滩逸"
    )
)
ZH_WORDS = """
我们 你们 他们 什么 没有 一个 这个 那个 自己 已经 现在 时候 知道 可以 因为 所以 但是 如果 虽然 还是
或者 而且 然后 非常 问题 工作 学习 生活 发展 国家 社会 经济 文化 历史 科学 技术 教育 研究 方法 系统
数据 信息 网络 计算 程序 模型 能力 重要 需要 进行 通过 认为 觉得 希望 应该 可能 开始 出现 成为 不同
一些 这些 那些 大家 孩子 朋友 老师 学生 父母 家庭 公司 市场 企业 产品 服务 管理 中国 世界 城市 地方
时间 今天 明天 昨天 以后 以前 最近 一直 总是 经常 特别 比较 更加 也许 其实 当然 一定 必须 关于 对于
根据 由于 为了 通常 一般 主要 基本 具体 简单 复杂 容易 困难 清楚 明白 喜欢 告诉 看到 听到 发现 了解
理解 解决 提高 增加 减少 影响 改变 保持 帮助 支持 使用 选择 决定 参加 完成 准备 继续 回答 解释 介绍
讨论 分析 设计 实现 建立 提供 包括 表示 说明 计划 目标 结果 原因 过程 情况 条件 环境 关系 作用 意义
价值 标准 方式 内容 部分 方面 水平 质量 速度 数量 规模 结构 功能 特点 优点 缺点 机会 挑战 压力 成功
失败 经验 知识 思想 观点 意见 建议 答案 例子 故事 事情 东西 身体 健康 心情 感觉 快乐 幸福 安全 自然
美丽 人们 人类 社区 医生 医院 学校 大学 课程 考试 作业 成绩 书籍 文章 语言 汉语 英语 数学 物理 化学
生物 地理 音乐 艺术 体育 运动 比赛 游戏 电影 电脑 手机 软件 互联网 人工智能 机器 算法 代码 编程 函数
变量 文件 图片 视频 声音 颜色 天气 温度 季节 春天 夏天 秋天 冬天 太阳 月亮 星星 地球 空气 水果 蔬菜
食物 早餐 午餐 晚餐 米饭 面条 饺子 咖啡 牛奶 衣服 房子 道路 汽车 火车 飞机 旅行 长江 黄河 动物 小狗
小猫 一起 一样 一下 一点 一次 第一 两个 三个 几个 很多 许多 所有 每个 其他 另外 同时 之后 之前 之间
中间 旁边 上面 下面 里面 外面 前面 后面 多少 怎么 怎样 为什么 哪里 哪个 如何 是否 不是 没关系 对不起
谢谢 请问 你好 再见 欢迎 当时 正在 曾经 刚才 马上 立刻 终于 突然 慢慢 渐渐 仍然 还有 只有 只要 不仅
不过 并且 于是 因此 然而 否则 甚至 尤其 例如 比如 首先 其次 最后 总之 实际上 事实上 一方面 另一方面
得到 出来 起来 下来 进来 回来 看看 想想 试试 开心 努力 认真 仔细 注意 记得 忘记 相信 担心 害怕 生气
满意 同意 反对 允许 要求 负责 参与 合作 交流 沟通 分享 表达 描述 比较 总结 推理 证明 假设 判断 评价
公式 定理 方程 等于 乘以 除以 加上 减去 平方 分数 小数 百分之 概率 统计 几何 面积 周长 体积 长度 宽度
本质 生产 反应 领域 识别 处理 诞生 理论 成熟 应用 不断 扩大 未来 智慧 机器人 图像 专家 叶子 风筝 老人
聊天 气候 温暖 湿润 丰富 发达 地区 写作 优秀 积累 坚持 日记 修改 生动 政府 政策 法律 公民 权利 责任
国际 全球 农村 人口 资源 能源 交通 医疗 银行 价格 收入 消费 投资 贸易 制造 工业 农业 科技 创新 平台
用户 客户 团队 项目 任务 会议 报告 邮件 电话 地址 网站 页面 搜索 下载 安装 更新 设置 登录 密码 服务器
模块 接口 参数 错误 测试 版本 训练 推理 预测 特征 向量 矩阵 梯度 损失 优化 神经网络 深度学习 语言模型
词汇 句子 段落 标题 作者 读者 小说 诗歌 新闻 杂志 博物馆 电视 节目 演员 歌手 作家 记者 律师 警察 司机
农民 工人 经理 同事 邻居 丈夫 妻子 儿子 女儿 哥哥 弟弟 妹妹 奶奶 名字 年龄 生日 节日 春节 中秋节 周末
假期 早晨 中午 傍晚 小时 分钟 星期 世纪 过去 将来 目前 后来 原来 本来 从来 逐渐 大概 大约 几乎 完全
十分 相当 稍微 竟然 果然 难道 究竟 到底 不要 不能 不会 必要 发生 产生 形成 存在 属于 具有 保护 控制
组织 领导 培养 锻炼 休息 睡觉 起床 打扫 购物 排队 等待 出发 到达 离开 回家 上班 下班 上学 毕业 研究生
"""
EN_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by not but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing
see him two has look more day could go come did number no most people my over know water than call
first who may down side been now find any new work part take get place made live where after back
little only round man year came show every good me give our under name very through just form
sentence great think say help low line turn cause much mean before move right boy old too same tell
does set three want air well also play small end put home read hand large add even land here must
big high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant food sun four between state keep eye never last let
thought city tree cross hard start might story saw far sea draw left late run while press close
night real life few north open seem together next white children begin got walk example paper group
always music those both often letter until river car feet care second book carry took science eat
room friend began idea fish mountain stop once base hear horse cut sure watch color face main enough
girl usual young ready above ever red list though feel talk bird soon body dog family direct leave
song measure door product black short class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole space heard best hour better true during
hundred five remember step early hold west ground interest reach fast sing listen six table travel
less morning ten simple several toward lay against pattern slow center love person money serve
appear road map rain rule pull cold notice voice unit power town fine certain fly fall lead dark
machine note wait plan figure star box field rest correct able done beauty drive stood contain front
teach week final gave green quick develop ocean warm free minute strong special mind behind clear
produce fact street nothing course stay wheel full force blue object decide surface deep moon island
system busy test record boat common possible plane dry wonder laugh thousand ago check game shape
hot miss brought heat snow bring yes distant fill east language among data model computer learning
training network function code user information program research result however because important
different following using value method process student teacher health energy history market company
government level public report across community market however therefore although
"""
PEOPLE = [
    ("小明", "Tom"),
    ("小红", "Lily"),
    ("我的妈妈", "My mother"),
    ("王老师", "Mr. Wang"),
    ("我的朋友", "My friend"),
    ("那个学生", "The student"),
    ("张医生", "Dr. Zhang"),
    ("李阿姨", "Aunt Li"),
    ("爷爷", "Grandpa"),
    ("这位工程师", "The engineer"),
    ("小华", "Jack"),
    ("姐姐", "My sister"),
    ("科学家", "The scientist"),
]
PLACES = [
    ("学校", "at school"),
    ("公园", "in the park"),
    ("图书馆", "in the library"),
    ("家里", "at home"),
    ("北京", "in Beijing"),
    ("上海", "in Shanghai"),
    ("医院", "at the hospital"),
    ("公司", "at the office"),
    ("超市", "at the supermarket"),
    ("海边", "by the sea"),
    ("实验室", "in the lab"),
    ("教室", "in the classroom"),
]
TIMES = [
    ("每天", "every day"),
    ("每个周末", "every weekend"),
    ("早上", "in the morning"),
    ("晚上", "in the evening"),
    ("下午", "in the afternoon"),
    ("星期一", "on Monday"),
    ("放学以后", "after school"),
    ("暑假里", "during the summer"),
    ("经常", "often"),
]
ACTS = [
    ("看书", "reads books"),
    ("学习数学", "studies math"),
    ("写作业", "does homework"),
    ("跑步", "goes running"),
    ("画画", "draws pictures"),
    ("弹钢琴", "plays the piano"),
    ("打篮球", "plays basketball"),
    ("做饭", "cooks dinner"),
    ("写代码", "writes code"),
    ("听音乐", "listens to music"),
    ("做实验", "does experiments"),
    ("学英语", "learns English"),
    ("种花", "plants flowers"),
    ("踢足球", "plays football"),
    ("看电影", "watches movies"),
    ("散步", "takes a walk"),
    ("唱歌", "sings songs"),
    ("练习书法", "practices calligraphy"),
]
TOPICS = [
    ("人工智能", "artificial intelligence"),
    ("环境保护", "environmental protection"),
    ("健康饮食", "healthy eating"),
    ("中国历史", "Chinese history"),
    ("数学", "mathematics"),
    ("太空探索", "space exploration"),
    ("机器学习", "machine learning"),
    ("编程", "programming"),
    ("传统文化", "traditional culture"),
    ("气候变化", "climate change"),
    ("音乐", "music"),
    ("物理学", "physics"),
    ("互联网", "the internet"),
    ("教育", "education"),
]
ADJS = [
    ("重要", "important"),
    ("有趣", "interesting"),
    ("有用", "useful"),
    ("复杂", "complex"),
    ("美好", "wonderful"),
    ("困难", "difficult"),
    ("神奇", "amazing"),
    ("简单", "simple"),
]
PARALLEL = [
    ("{t}，{p}在{pl}{a}。", "{P} {A} {PL} {T}."),
    ("{p}认为{to}非常{ad}。", "{P} thinks {TO} is very {AD}."),
    ("{p}对{to}很感兴趣，{t}都会{a}。", "{P} is interested in {TO} and {A} {T}."),
    ("虽然{to}有点{ad}，但是{p}{t}都{a}。", "Although {TO} is {AD}, {p_} {A} {T}."),
    ("如果明天不下雨，{p}就去{pl}。", "If it does not rain tomorrow, {p_} will go {PL}."),
    ("{p}在{pl}遇到了{p2}。", "{P} met {p2_} {PL}."),
]
FACTS = [
    (
        "中国的首都是哪里？",
        "中国的首都是北京。",
        "What is the capital of China?",
        "The capital of China is Beijing.",
    ),
    (
        "水在多少度沸腾？",
        "在标准大气压下，水在100摄氏度沸腾。",
        "At what temperature does water boil?",
        "At sea level, water boils at 100 degrees Celsius.",
    ),
    (
        "什么是人工智能？",
        "人工智能是让计算机模拟人类智能的技术，比如理解语言和识别图像。",
        "What is artificial intelligence?",
        "AI is technology that lets computers understand language, recognize images and decide.",
    ),
    (
        "如何保持健康？",
        "保持健康需要均衡饮食、规律作息、适量运动和良好的心态。",
        "How can I stay healthy?",
        "Eat a balanced diet, sleep well and exercise regularly.",
    ),
]
GREETINGS = [
    ("你好", "你好！我是一个人工智能助手，有什么可以帮你的吗？"),
    ("Hello!", "Hello! I'm an AI assistant. How can I help you today?"),
    ("你是谁？", "我是一个小型语言模型，可以回答问题、解数学题和陪你聊天。"),
    ("谢谢你！", "不客气！如果还有其他问题，随时问我。"),
    ("Thank you!", "You're welcome! Let me know if you have any other questions."),
]
SYSTEMS = [
    "你是一个乐于助人的助手。",
    "You are a helpful assistant.",
    "你是一个擅长数学的助手，请一步一步地思考。",
    "You are a concise and honest assistant.",
]
ITEMS = [
    ("苹果", "个", "apples"),
    ("铅笔", "支", "pencils"),
    ("书", "本", "books"),
    ("花", "朵", "flowers"),
    ("糖", "块", "candies"),
    ("鸡蛋", "个", "eggs"),
    ("气球", "个", "balloons"),
    ("小鱼", "条", "fish"),
    ("邮票", "张", "stamps"),
]
NAMES = [
    "Tom",
    "Lily",
    "Jack",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Mia",
    "James",
    "Sophia",
    "Natalia",
    "Weng",
    "Betty",
    "Julie",
    "Mark",
    "Janet",
    "Tina",
    "Carla",
]
ZH, EN = list(dict.fromkeys(ZH_WORDS.split())), list(dict.fromkeys(EN_WORDS.split()))
_CW = {
    k: list(accumulate(1 / (i + 10) for i in range(len(v))))
    for k, v in (("zh", ZH), ("en", EN), ("ch", COMMON_CHARS))
}


def _mid(s: str) -> str:
    return s[0].lower() + s[1:] if s.startswith(("My ", "The ")) else s


def _fill(rng: random.Random, zh: str, en: str) -> tuple[str, str]:
    (p, P), (p2, P2), (pl, PL) = rng.choice(PEOPLE), rng.choice(PEOPLE), rng.choice(PLACES)
    (t, T), (a, A), (to, TO) = rng.choice(TIMES), rng.choice(ACTS), rng.choice(TOPICS)
    ad, AD = rng.choice(ADJS)
    kw = dict(
        p=p,
        p2=p2,
        pl=pl,
        t=t,
        a=a,
        to=to,
        ad=ad,
        P=P,
        p_=_mid(P),
        p2_=_mid(P2),
        PL=PL,
        T=T,
        A=A,
        TO=TO,
        AD=AD,
    )
    return zh.format(**kw), en.format(**kw)


def sentences(rng: random.Random, zh: bool) -> str:
    out = [_fill(rng, *rng.choice(PARALLEL))[0 if zh else 1] for _ in range(rng.randint(2, 6))]
    return ("" if zh else " ").join(out)


def zh_words(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(2, 6)):
        clauses = []
        for _ in range(rng.randint(1, 4)):
            k = rng.randint(2, 7)
            words = rng.choices(ZH, cum_weights=_CW["zh"], k=k)
            chars = rng.choices(COMMON_CHARS, cum_weights=_CW["ch"], k=k)
            clauses.append(
                "".join(w if rng.random() < 0.55 else c for w, c in zip(words, chars, strict=True))
            )
        out.append("，".join(clauses) + rng.choice("。。。？！"))
    return "".join(out)


def en_words(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(2, 6)):
        words = rng.choices(EN, cum_weights=_CW["en"], k=rng.randint(4, 16))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 100)))
        if rng.random() < 0.4:
            words[rng.randrange(len(words) - 1)] += ","
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice("...?!"))
    return " ".join(out)


def math_problem(rng: random.Random, zh: bool) -> tuple[str, str]:
    """A word problem with a worked solution, as (question, answer)."""
    (item, unit, items), kind = rng.choice(ITEMS), rng.randrange(4)
    a, b = rng.randint(2, 99), rng.randint(2, 30)
    name = rng.choice(PEOPLE)[0] if zh else rng.choice(NAMES)
    if kind == 0:
        r, op = a + b, "+"
        q = (
            f"{name}有{a}{unit}{item}，又买了{b}{unit}，现在一共有多少{unit}{item}？"
            if zh
            else f"{name} has {a} {items} and buys {b} more. How many {items} are there now?"
        )
    elif kind == 1:
        a, r, op = a + b, a, "-"
        q = (
            f"{name}有{a}{unit}{item}，送给同学{b}{unit}，还剩多少{unit}？"
            if zh
            else f"{name} had {a} {items} and gave {b} away. How many {items} are left?"
        )
    elif kind == 2:
        a, b = a % 12 + 2, b % 9 + 2
        r, op = a * b, "×" if zh else "*"
        q = (
            f"每盒有{a}{unit}{item}，{b}盒一共有多少{unit}？"
            if zh
            else f"Each box holds {a} {items}. How many {items} are in {b} boxes?"
        )
    else:
        b = b % 9 + 2
        a, r, op = a * b, a, "÷" if zh else "/"
        q = (
            f"把{a}{unit}{item}平均分给{b}个小朋友，每人分到几{unit}？"
            if zh
            else f"{name} shares {a} {items} equally among {b} friends. How many does each get?"
        )
    if zh:
        return q, f"解：{a} {op} {b} = {r}（{unit}）\n答：{r}{unit}。"
    if rng.random() < 0.5:
        return q, f"{name} gets {a} {op} {b} = <<{a}{op}{b}={r}>>{r} {items}.\n#### {r}"
    return q, f"{a} {op} {b} = {r}, so the answer is {r}."


def arithmetic(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 8)):
        a, b, x = rng.randint(0, 200), rng.randint(1, 20), rng.randint(1, 12)
        lines.append(
            rng.choice(
                [
                    f"{a} + {b} = {a + b}",
                    f"{a} - {b} = {a - b}",
                    f"{x} × {b} = {x * b}",
                    f"{x * b} ÷ {b} = {x}",
                    f"{b} * {x} = {b * x}",
                    f"{b / 4:g} + {x / 2:g} = {b / 4 + x / 2:g}",
                    f"解方程：{b}x + {a} = {b * x + a}，得 x = {x}。",
                    f"{b}% of {a * 10} is {a * b / 10:g}.",
                ]
            )
        )
    return "\n".join(lines)


def chat(rng: random.Random) -> str:
    zh = rng.random() < 0.6
    turns = [("system", rng.choice(SYSTEMS))] if rng.random() < 0.3 else []
    for _ in range(rng.randint(1, 3)):
        k = rng.random()
        if k < 0.1:
            q, a = rng.choice(GREETINGS)
        elif k < 0.2:
            f = rng.choice(FACTS)
            q, a = (f[0], f[1]) if zh else (f[2], f[3])
        elif k < 0.6:
            q, a = math_problem(rng, zh)
        else:
            c, e = _fill(rng, *rng.choice(PARALLEL))
            q, a = (
                (f"请把下面的句子翻译成英文：{c}", e) if zh else (f"Translate into Chinese: {e}", c)
            )
        turns += [("user", q), ("assistant", a)]
    return "\n".join(f"{role}\n{content}" for role, content in turns)


def json_doc(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return json.dumps({"text": sentences(rng, rng.random() < 0.6)}, ensure_ascii=False)
    p, pl, to = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(TOPICS)
    obj = {
        "id": rng.randint(1, 9999),
        "name": rng.choice([p[0], rng.choice(NAMES)]),
        "age": rng.randint(6, 80),
        "city": rng.choice([pl[0], pl[1].split()[-1]]),
        "interests": [to[0], to[1]],
        "score": round(rng.uniform(0, 100), 1),
        "active": rng.random() < 0.5,
        "tags": None if rng.random() < 0.3 else ["a", "b"],
    }
    return json.dumps(obj, ensure_ascii=False, indent=rng.choice([None, 2, 4]))


CODE = [
    'def {f}({x}, {y}):\n    """Return the {w} of {x} and {y}."""\n    return {x} {op} {y}\n\n\n'
    "print({f}({n}, {m}))",
    'for i in range({n}):\n    if i % {m} == 0:\n        print(f"{{i}} is divisible by {m}")\n'
    "    else:\n        continue",
    "class {C}:\n    def __init__(self, {x}):\n        self.{x} = {x}\n\n    def __repr__(self):\n"
    '        return f"{C}({x}={{self.{x}!r}})"',
    "import numpy as np\n\n{x} = np.arange({n})\n{y} = {x} ** 2\nprint({y}.sum(), {y}.mean())",
    "# 计算列表中所有数字的和\n{x} = [{n}, {m}, {k}]\ntotal = 0\nfor v in {x}:\n    total += v\n"
    'print("总和：", total)',
    'with open("{x}.txt", "r", encoding="utf-8") as f:\n    lines = [line.strip() for line in f]\n'
    "print(len(lines))",
    "SELECT name, COUNT(*) AS n FROM {x} WHERE age > {n} GROUP BY name ORDER BY n DESC;",
    "function {f}({x}, {y}) {{\n  return {x} {op} {y};\n}}\nconsole.log({f}({n}, {m}));",
]
IDENTS = ["data", "value", "items", "count", "result", "scores", "user", "nums", "text", "xs"]
OPS = [("+", "sum"), ("-", "difference"), ("*", "product"), ("/", "quotient"), ("%", "remainder")]


def code(rng: random.Random) -> str:
    (x, y), (op, w) = rng.sample(IDENTS, 2), rng.choice(OPS)
    return rng.choice(CODE).format(
        f=rng.choice(["compute", "combine", "apply_op", "calc"]),
        x=x,
        y=y,
        op=op,
        w=w,
        n=rng.randint(1, 100),
        m=rng.randint(2, 9),
        k=rng.randint(1, 20),
        C=rng.choice(["Point", "Node", "Student"]),
    )


GENERATORS: list[tuple[Callable[[random.Random], str], float]] = [
    (zh_words, 32),
    (en_words, 18),
    (lambda r: sentences(r, True), 4),
    (lambda r: sentences(r, False), 4),
    (lambda r: "\n".join(math_problem(r, True)), 6),
    (lambda r: "\n".join(math_problem(r, False)), 6),
    (arithmetic, 3),
    (chat, 12),
    (json_doc, 3),
    (code, 5),
]


def build_corpus(seed: int = 0, target_mb: float = DEFAULT_TARGET_MB) -> Iterator[str]:
    """Yield documents (without a final newline) until about `target_mb` MB of UTF-8 text."""
    rng = random.Random(seed)
    fns, weights = zip(*GENERATORS, strict=True)
    total, limit = 0, int(target_mb * 1e6)
    while total < limit:
        doc = rng.choices(fns, weights=weights)[0](rng)
        total += len(doc.encode("utf-8")) + 1
        yield doc


def write_corpus(
    path: str | os.PathLike, seed: int = 0, target_mb: float = DEFAULT_TARGET_MB
) -> int:
    """Write the corpus to `path`, each document followed by a newline; returns its bytes."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for doc in build_corpus(seed, target_mb):
            n += len(doc.encode("utf-8")) + 1
            f.write(doc + "\n")
    return n
