"""Word lists of the synthetic demo battles: topics, templates, code, emoji.

Data only, for :mod:`pipelines.make_demo_data`: sentence and prompt templates
per language (``{noun}``, ``{noun2}``, ``{Noun}``, ``{adj}`` are filled in),
coding tasks and snippets, greetings, emoji and whitespace-only answers.
Changing any list changes the demo table for every seed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CODE_PROMPTS",
    "CODE_SENTENCES",
    "CODE_SNIPPETS",
    "CODE_TASKS",
    "EMOJI",
    "EN_ADJECTIVES",
    "EN_TOPICS",
    "GREETINGS",
    "GREETING_REPLIES",
    "LEXICONS",
    "WHITESPACE",
    "Lexicon",
]


@dataclass(frozen=True)
class Lexicon:
    """The words of one language; `sentence_joiner` joins sentences ("" in Chinese)."""

    nouns: tuple[str, ...]
    sentences: tuple[str, ...]
    prompts: tuple[str, ...]
    follow_ups: tuple[str, ...]
    headers: tuple[str, ...]
    refusals: tuple[str, ...]
    sentence_joiner: str = " "


def _lexicon(joiner: str = " ", **fields: str) -> Lexicon:
    """Build a lexicon from ``|``-separated strings, which keeps the tables short."""
    return Lexicon(
        **{name: tuple(text.split("|")) for name, text in fields.items()},
        sentence_joiner=joiner,
    )


EN_TOPICS: tuple[tuple[str, ...], ...] = tuple(
    tuple(topic.split("|"))
    for topic in (
        "sourdough bread|a cast-iron pan|knife skills|slow fermentation",
        "budget travel|a rail pass|jet lag|packing light|travel insurance",
        "recursion|unit testing|version control|memory management",
        "the Roman Empire|the printing press|the Silk Road|medieval castles",
        "black holes|photosynthesis|plate tectonics|the immune system",
        "index funds|compound interest|a household budget|credit scores",
        "sleep hygiene|strength training|stress management|hydration",
        "jazz improvisation|watercolor painting|film noir|haiku",
        "houseplants|a job interview|public speaking|remote work",
    )
)
EN_ADJECTIVES = "careful gradual practical structured flexible simple thorough".split()

LEXICONS: dict[str, Lexicon] = {
    "en": _lexicon(
        nouns="|".join(noun for topic in EN_TOPICS for noun in topic),
        sentences="{Noun} is often misunderstood, but the core idea is simple."
        "|A good first step is to look at how {noun} relates to {noun2}."
        "|In practice, most people start with {noun} and refine it over time."
        "|The main trade-off is between {adj} results and the time it takes."
        "|Keep in mind that {noun} depends heavily on context."
        "|Many experts recommend practising {noun} a little every day."
        "|If you are unsure, compare {noun} with {noun2} side by side."
        "|This is why {noun} matters more than it first appears."
        "|One common mistake is to ignore {noun} entirely."
        "|Historically, {noun} developed alongside {noun2}."
        "|You can think of {noun} as a {adj} version of {noun2}."
        "|For beginners, a {adj} approach to {noun} works best."
        "|The evidence on {noun} is mixed, so be careful with strong claims."
        "|Overall, {noun} rewards patience and careful observation."
        "|It also helps to write down what you learn about {noun}.",
        prompts="Explain {noun} to a complete beginner."
        "|What is the difference between {noun} and {noun2}?"
        "|Write a short poem about {noun}.|Give me three practical tips for {noun}."
        "|Can you summarize the history of {noun}?"
        "|Is {noun} worth learning? Why or why not?"
        "|How would you explain {noun} to a ten-year-old?"
        "|What are the pros and cons of {noun}?",
        follow_ups="Can you make it shorter?|Give me a concrete example."
        "|Thanks! What about {noun2}?|Now rewrite that as a bulleted list."
        "|Why is that?",
        headers="Overview|Key points|Step-by-step|Summary|Details",
        refusals="I'm sorry, but I can't help with that."
        "|As an AI language model, I cannot provide advice about {noun}."
        "|As an AI language model, I cannot assist with this request."
        "|I'm sorry, but I cannot fulfill this request."
        "|I apologize, but I am not able to help with that.",
    ),
    "zh": _lexicon(
        joiner="",
        nouns="机器学习|中国历史|健康饮食|时间管理|量子计算|古典诗词"
        "|城市交通|气候变化|个人理财|编程入门|跑步训练|咖啡文化",
        sentences="{noun}是一个值得深入了解的话题。|首先，我们需要理解{noun}的基本概念。"
        "|在实际生活中，{noun}和{noun2}往往密切相关。"
        "|很多人在学习{noun}时会犯一些常见的错误。|总的来说，{noun}需要耐心和持续的练习。"
        "|专家建议从简单的{noun}入手，然后逐步深入。|需要注意的是，{noun}的效果因人而异。"
        "|从历史上看，{noun}的发展与{noun2}有很大关系。",
        prompts="请解释一下{noun}。|{noun}和{noun2}有什么区别？|给我三个关于{noun}的建议。"
        "|写一首关于{noun}的短诗。|如何开始学习{noun}？",
        follow_ups="能再简短一点吗？|请举个例子。|那{noun2}呢？",
        headers="概述|要点|总结",
        refusals="抱歉，我不能帮助您完成这个请求。|抱歉，我不能提供关于{noun}的信息。"
        "|作为一个人工智能语言模型，我无法回答这个问题。",
    ),
    "ru": _lexicon(
        nouns="машинное обучение|история России|здоровое питание|управление временем"
        "|квантовые вычисления|изменение климата|личные финансы|программирование"
        "|классическая литература",
        sentences="Тема «{noun}» заслуживает внимательного изучения."
        "|Во-первых, важно понять основные идеи темы «{noun}»."
        "|На практике «{noun}» и «{noun2}» часто связаны между собой."
        "|Многие новички ошибаются, когда начинают изучать «{noun}»."
        "|В целом, «{noun}» требует терпения и регулярной практики."
        "|Эксперты советуют начинать с простых шагов."
        "|Важно помнить, что результаты зависят от контекста.",
        prompts="Объясни, что такое «{noun}».|Чем «{noun}» отличается от «{noun2}»?"
        "|Дай три совета по теме «{noun}».|Напиши короткое стихотворение про «{noun}».",
        follow_ups="Можно короче?|Приведи пример.|А как насчёт «{noun2}»?",
        headers="Обзор|Основные моменты|Итог",
        refusals="Извините, я не могу помочь с этим запросом."
        "|Извините, я не могу ответить на вопрос о «{noun}»."
        "|Как языковая модель ИИ, я не могу этого сделать.",
    ),
    "es": _lexicon(
        nouns="el aprendizaje automático|la historia de España|el cambio climático"
        "|la alimentación saludable|la gestión del tiempo|la programación"
        "|las finanzas personales|la poesía clásica|la computación cuántica",
        sentences="{Noun} es un tema que merece atención."
        "|En primer lugar, es importante entender los conceptos de {noun}."
        "|En la práctica, {noun} y {noun2} suelen estar relacionados."
        "|Muchas personas cometen errores al empezar con {noun}."
        "|En general, {noun} requiere paciencia y práctica constante."
        "|Los expertos recomiendan empezar poco a poco."
        "|Hay que tener en cuenta que los resultados dependen del contexto.",
        prompts="Explícame {noun} de forma sencilla."
        "|¿Cuál es la diferencia entre {noun} y {noun2}?"
        "|Dame tres consejos sobre {noun}.|Escribe un poema corto sobre {noun}.",
        follow_ups="¿Puedes resumirlo?|Dame un ejemplo.|¿Y qué hay de {noun2}?",
        headers="Resumen|Puntos clave|Conclusión",
        refusals="Lo siento, pero no puedo ayudar con eso."
        "|Como modelo de lenguaje de IA, no puedo hacer eso.",
    ),
}

CODE_TASKS = tuple(
    tuple(pair.split(":"))
    for pair in (
        "removes duplicates from a list:dedupe|reverses a string:reverse_text"
        "|checks whether a number is prime:is_prime"
        "|merges two sorted lists:merge_sorted|counts word frequencies:word_counts"
        "|flattens a nested list:flatten|computes a moving average:moving_average"
    ).split("|")
)
CODE_PROMPTS = (
    "Write a {lang} function that {task}.|How do I write code that {task} in {lang}?"
    "|My {lang} function that {task} is too slow. How can I speed it up?"
    "|Explain step by step how to implement something that {task}."
).split("|")
CODE_SENTENCES = (
    "The function below {task}.|It runs in linear time for typical inputs."
    "|Edge cases such as empty input are handled explicitly."
    "|You can test it with a few small examples first."
    "|If performance matters, avoid copying the data more than once."
    "|This version favours readability over cleverness."
    "|Make sure to add unit tests for the tricky cases."
    "|Note that the order of the original items is preserved."
).split("|")
# Snippets use `{fname}` placeholders filled with str.replace: they contain braces.
CODE_SNIPPETS: dict[str, str] = {
    "Python": "def {fname}(items):\n    seen = set()\n    result = []\n"
    "    for item in items:\n        if item not in seen:\n"
    "            seen.add(item)\n            result.append(item)\n    return result",
    "JavaScript": "function {fname}(items) {\n"
    "  return items.filter((item, i) => items.indexOf(item) === i);\n}",
    "SQL": "SELECT name, COUNT(*) AS total\nFROM orders\nGROUP BY name\n"
    "ORDER BY total DESC;",
    "Rust": "fn {fname}(items: &[i32]) -> Vec<i32> {\n"
    "    let mut out = items.to_vec();\n    out.sort();\n    out.dedup();\n    out\n}",
}
GREETINGS = ("hey", "hi", "hello")
GREETING_REPLIES = (
    "Hello! How can I help you today?|Hi there! What can I do for you?"
    "|Hey! How's it going?|Hello! Is there anything you would like to talk about?"
).split("|")
EMOJI = ("\U0001f34d", "\U0001f600", "\U0001f680", "\U0001f389", "\U0001f44d")
EMOJI += ("\U0001f914", "\U0001f525", "\U0001f30d", "\U0001f4da", "\u2728")
WHITESPACE = (" ", "\n", "  \n\n ", "\t", "\n\n")
