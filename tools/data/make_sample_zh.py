#!/usr/bin/env python3
# Writes data/sample_zh.jsonl: a SYNTHETIC Chinese data set in the medical-o1-reasoning-SFT
# format (Question, Complex_CoT, Response), written for r1dist's tests and embedded default.
# Rows are combined from hand-written templates (patients, conditions, findings, reasoning
# steps) with a fixed seed, so lengths vary. Not real cases and not medical advice.
#
#   python3 tools/data/make_sample_zh.py [OUT]   (default data/sample_zh.jsonl)
import json
import random
import sys

PATIENTS = [
    ("28岁", "男性", "程序员", "常年熬夜、久坐"),
    ("35岁", "女性", "教师", "工作压力大、睡眠不足"),
    ("42岁", "男性", "出租车司机", "饮食不规律、吸烟二十年"),
    ("56岁", "女性", "退休会计", "有高血压病史十年"),
    ("63岁", "男性", "农民", "长期饮酒"),
    ("19岁", "女性", "大学生", "近期节食减肥"),
    ("47岁", "男性", "销售经理", "应酬多、体重超标"),
    ("71岁", "女性", "家庭主妇", "有2型糖尿病史"),
]

# name, complaint, duration options, key findings, extra findings, reasoning steps,
# differentials, conclusion, advice
CONDITIONS = [
    dict(
        name="良性阵发性位置性眩晕",
        complaint="起床或翻身时突发天旋地转，持续不到一分钟，伴恶心",
        findings=["Dix-Hallpike试验阳性，可见短暂旋转性眼震", "神经系统查体未见局灶体征"],
        extras=["听力检查正常", "血压、血糖在正常范围", "无头痛及肢体无力"],
        steps=["眩晕与头位变化密切相关且持续时间短，首先考虑外周性眩晕",
               "Dix-Hallpike试验诱发出有潜伏期、可疲劳的眼震，符合后半规管耳石症",
               "没有听力下降和耳鸣，不支持梅尼埃病",
               "没有局灶神经体征，中枢性眩晕可能性低，但高龄或有血管危险因素者仍需警惕"],
        diffs=["梅尼埃病", "前庭神经炎", "后循环缺血"],
        conclusion="最可能的诊断是良性阵发性位置性眩晕（耳石症）",
        advice="可行耳石复位治疗，避免突然改变头位；若出现持续眩晕、言语不清或肢体无力，应立即就医排除脑卒中。",
    ),
    dict(
        name="缺铁性贫血",
        complaint="乏力、头晕、活动后心慌，面色苍白",
        findings=["血红蛋白92 g/L，平均红细胞体积降低", "血清铁蛋白明显降低"],
        extras=["月经量偏多", "指甲变薄变脆", "大便潜血阴性"],
        steps=["乏力、头晕、面色苍白提示贫血",
               "小细胞低色素性贫血最常见的原因是缺铁",
               "铁蛋白降低是缺铁最有价值的指标，可与慢性病贫血和地中海贫血区分",
               "还要寻找失血或摄入不足的原因，例如月经过多、消化道出血或节食"],
        diffs=["地中海贫血", "慢性病贫血", "铁粒幼细胞贫血"],
        conclusion="考虑缺铁性贫血，需明确缺铁的原因",
        advice="在医生指导下补充铁剂，同时查找并处理出血或营养不足的原因，定期复查血常规和铁蛋白。",
    ),
    dict(
        name="急性胃肠炎",
        complaint="进食路边小吃后出现腹泻、呕吐、阵发性腹痛",
        findings=["腹部软，脐周轻压痛，无反跳痛", "肠鸣音活跃"],
        extras=["体温37.8℃", "同餐者中也有人出现类似症状", "大便为稀水样，无脓血"],
        steps=["起病急，与不洁饮食有关，以腹泻、呕吐为主，首先考虑急性胃肠炎",
               "腹部没有腹膜刺激征，暂不支持阑尾炎等外科急腹症",
               "需要评估脱水程度：口渴、尿量减少、皮肤弹性都是线索",
               "无脓血便、无高热，细菌性痢疾可能性较小"],
        diffs=["急性阑尾炎", "细菌性痢疾", "食物中毒"],
        conclusion="最可能为急性胃肠炎，伴轻度脱水",
        advice="少量多次口服补液盐，清淡饮食；若出现高热、便血、持续呕吐无法进水或尿量明显减少，应及时就医。",
    ),
    dict(
        name="紧张型头痛",
        complaint="双侧额颞部紧箍样头痛，下午加重",
        findings=["颈肩部肌肉紧张、压痛", "神经系统查体正常"],
        extras=["无恶心呕吐", "不怕光不怕声", "头痛不影响日常活动"],
        steps=["头痛为双侧、压迫或紧箍样，程度轻到中度，符合紧张型头痛的特点",
               "没有恶心、畏光畏声，不符合偏头痛",
               "需要排除危险信号：突发剧烈头痛、发热、视力改变、神经功能缺损等均不存在",
               "长期熬夜、压力大和不良姿势是常见诱因"],
        diffs=["偏头痛", "颈源性头痛", "药物过度使用性头痛"],
        conclusion="考虑紧张型头痛",
        advice="规律作息，适当运动和拉伸颈肩部，避免长期大量服用止痛药；头痛性质改变或出现危险信号时需就医。",
    ),
    dict(
        name="2型糖尿病",
        complaint="口渴、多饮、多尿，近三个月体重下降约4公斤",
        findings=["空腹血糖9.6 mmol/L", "糖化血红蛋白8.1%"],
        extras=["有糖尿病家族史", "尿糖阳性，尿酮体阴性", "双足感觉正常"],
        steps=["多饮、多尿、体重下降是典型的高血糖症状",
               "空腹血糖超过7.0 mmol/L且糖化血红蛋白超过6.5%，达到糖尿病诊断标准",
               "起病缓慢、无酮症、有家族史，更符合2型糖尿病",
               "还需评估血压、血脂、肾功能和眼底，筛查并发症"],
        diffs=["1型糖尿病", "继发性糖尿病", "尿崩症"],
        conclusion="诊断为2型糖尿病",
        advice="在医生指导下开始生活方式干预和药物治疗，控制饮食、增加运动，定期监测血糖并筛查并发症。",
    ),
    dict(
        name="社区获得性肺炎",
        complaint="发热、咳嗽、咳黄痰三天，伴右侧胸痛",
        findings=["右下肺可闻及湿啰音", "胸片示右下肺斑片状阴影"],
        extras=["体温38.9℃", "白细胞计数升高", "血氧饱和度95%"],
        steps=["急性起病，有发热、咳嗽、咳脓痰，提示下呼吸道感染",
               "局部湿啰音和胸片新出现的浸润影支持肺炎",
               "需要评估病情严重程度：意识、呼吸频率、血压和年龄都很重要",
               "根据严重程度决定门诊治疗还是住院"],
        diffs=["急性支气管炎", "肺结核", "肺栓塞"],
        conclusion="考虑社区获得性肺炎",
        advice="需要尽快就医评估并在医生指导下使用抗感染治疗；若出现呼吸困难、意识改变或口唇发绀应立即急诊。",
    ),
    dict(
        name="胃食管反流病",
        complaint="饭后胸骨后烧灼感、反酸，平卧时加重",
        findings=["胃镜示食管下段黏膜破损", "心电图正常"],
        extras=["晚餐常较晚且过饱", "偶有夜间咳嗽", "无吞咽困难和消瘦"],
        steps=["烧心、反酸是胃食管反流的典型症状，与进食和体位相关",
               "胸骨后不适首先要排除心源性胸痛，心电图正常且症状与活动无关",
               "没有吞咽困难、消瘦、呕血等报警症状，恶性病变可能性低",
               "胃镜所见支持反流性食管炎"],
        diffs=["冠心病心绞痛", "功能性烧心", "消化性溃疡"],
        conclusion="诊断为胃食管反流病（反流性食管炎）",
        advice="睡前三小时不进食、抬高床头、减重戒烟，必要时在医生指导下使用抑酸药物。",
    ),
    dict(
        name="甲状腺功能亢进症",
        complaint="心慌、怕热、多汗、手抖，食量增加但体重下降",
        findings=["心率112次/分", "游离T4升高，TSH降低"],
        extras=["甲状腺弥漫性肿大", "双眼轻度突出", "情绪易激动"],
        steps=["高代谢症状加上心动过速，提示甲状腺毒症",
               "TSH降低、游离T4升高确认为原发性甲状腺功能亢进",
               "弥漫性甲状腺肿和突眼最符合Graves病",
               "还需与亚急性甲状腺炎等一过性甲状腺毒症鉴别"],
        diffs=["亚急性甲状腺炎", "毒性结节性甲状腺肿", "焦虑障碍"],
        conclusion="考虑Graves病引起的甲状腺功能亢进症",
        advice="需在内分泌科就诊，明确病因后选择药物、放射性碘或手术治疗，治疗期间定期复查甲状腺功能和血常规。",
    ),
]

DURATIONS = ["两天", "一周", "两周", "一个月", "三个月"]
ASKS = ["最可能的诊断是什么？", "应该考虑什么疾病，下一步怎么处理？", "请分析可能的原因并给出建议。"]


def make_row(rng, patient, cond):
    age, sex, job, habit = patient
    dur = rng.choice(DURATIONS)
    extras = rng.sample(cond["extras"], rng.randint(0, len(cond["extras"])))
    question = f"{age}{sex}，{job}，{habit}，{dur}来{cond['complaint']}。"
    question += "查体及检查：" + "；".join(cond["findings"] + extras) + "。" + rng.choice(ASKS)
    steps = cond["steps"][:]
    cot = [f"患者{age}{sex}，{habit}，主要表现为{cond['complaint']}，病程{dur}。"]
    for i, s in enumerate(steps):
        cot.append(("首先，" if i == 0 else rng.choice(["其次，", "另外，", "再看，", "同时，"])) + s + "。")
    if rng.random() < 0.7:
        diffs = rng.sample(cond["diffs"], rng.randint(1, len(cond["diffs"])))
        cot.append("鉴别诊断方面，还要想到" + "、".join(diffs) + "，但目前的表现和检查结果都更支持" + cond["name"] + "。")
    if extras and rng.random() < 0.6:
        cot.append("补充信息中，" + "，".join(extras) + "，这些也与上述判断一致。")
    cot.append("综合来看，" + cond["conclusion"] + "。")
    response = cond["conclusion"] + "。" + cond["advice"] + "以上分析仅用于示例，不能代替医生面诊。"
    return {"Question": question, "Complex_CoT": "".join(cot), "Response": response}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "data/sample_zh.jsonl"
    rng = random.Random(20261129)
    rows = [make_row(rng, p, c) for c in CONDITIONS for p in PATIENTS]  # 8 x 8 = 64
    rng.shuffle(rows)
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
