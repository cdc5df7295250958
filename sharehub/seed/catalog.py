"""What the generator draws from: cities with coordinates, names, and per-category items with
plausible daily prices (roubles) and text fragments that read like real ads."""

from __future__ import annotations

from dataclasses import dataclass

# (name, latitude, longitude, weight ~ population in millions)
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("Москва", 55.7558, 37.6173, 13.0),
    ("Санкт-Петербург", 59.9343, 30.3351, 5.6),
    ("Новосибирск", 55.0084, 82.9357, 1.6),
    ("Екатеринбург", 56.8389, 60.6057, 1.5),
    ("Казань", 55.7961, 49.1064, 1.3),
    ("Нижний Новгород", 56.2965, 43.9361, 1.2),
    ("Красноярск", 56.0153, 92.8932, 1.2),
    ("Челябинск", 55.1644, 61.4368, 1.2),
    ("Самара", 53.1959, 50.1002, 1.2),
    ("Уфа", 54.7388, 55.9721, 1.1),
    ("Ростов-на-Дону", 47.2357, 39.7015, 1.1),
    ("Краснодар", 45.0355, 38.9753, 1.1),
    ("Омск", 54.9885, 73.3242, 1.1),
    ("Воронеж", 51.6720, 39.1843, 1.0),
    ("Пермь", 58.0105, 56.2502, 1.0),
    ("Волгоград", 48.7080, 44.5133, 1.0),
    ("Тюмень", 57.1530, 65.5343, 0.8),
    ("Сочи", 43.5855, 39.7231, 0.45),
    ("Калининград", 54.7104, 20.4522, 0.5),
    ("Владивосток", 43.1198, 131.8869, 0.6),
)

FIRST_NAMES = (
    "Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья", "Кирилл", "Михаил",
    "Никита", "Иван", "Павел", "Роман", "Егор", "Анна", "Мария", "Елена", "Ольга", "Наталья", "Екатерина",
    "Татьяна", "Ирина", "Светлана", "Юлия", "Анастасия", "Дарья", "Полина", "Ксения", "Виктория",
)
LAST_INITIALS = "АБВГДЕЖЗИКЛМНОПРСТУФХЧШЯ"


@dataclass(frozen=True)
class ItemTemplate:
    category_id: str
    names: tuple[str, ...]
    # Daily price range in roubles; hourly listings charge about a sixth of it per hour.
    price_rub: tuple[int, int]
    features: tuple[str, ...]
    deposit_factor: float = 5.0
    hourly_share: float = 0.0  # share of listings rented by the hour


ITEMS: tuple[ItemTemplate, ...] = (
    ItemTemplate("power-tools", ("Перфоратор Bosch GBH 2-26", "Дрель-шуруповёрт Makita DF333", "Болгарка DeWalt 125 мм",
                                 "Лобзик Metabo STEB 65", "Перфоратор Makita HR2470", "Шлифмашина Bosch GEX 125"),
                 (400, 1200), ("в кейсе", "с набором свёрл", "два аккумулятора", "с зарядкой", "мощность 800 Вт"),
                 hourly_share=0.2),
    ItemTemplate("hand-tools", ("Набор инструментов 108 предметов", "Строительный уровень 2 м", "Тиски слесарные",
                                "Набор ключей Stanley"), (150, 500), ("полный комплект", "в ящике", "почти новый")),
    ItemTemplate("garden-tools", ("Газонокосилка Husqvarna", "Триммер бензиновый Stihl FS 55", "Культиватор Champion",
                                  "Садовый измельчитель Bosch AXT"), (600, 2000),
                 ("бензин в комплекте", "инструкция", "проверен перед выдачей")),
    ItemTemplate("construction", ("Бетономешалка 180 л", "Виброплита Zitrek", "Строительные леса 2 секции",
                                  "Отбойный молоток Makita HM1307"), (800, 2500),
                 ("доставка по городу", "с удлинителем", "для частного дома")),
    ItemTemplate("laptops", ("Ноутбук MacBook Air M2", "Игровой ноутбук ASUS ROG", "Планшет iPad 10.9",
                             "Ноутбук Lenovo ThinkPad"), (700, 2500),
                 ("с зарядкой", "чистая система", "чехол в подарок")),
    ItemTemplate("consoles", ("PlayStation 5 с двумя геймпадами", "Xbox Series X", "Nintendo Switch OLED",
                              "VR-шлем Oculus Quest 2"), (600, 1800),
                 ("10 игр на аккаунте", "два джойстика", "HDMI-кабель")),
    ItemTemplate("audio", ("Колонка JBL PartyBox 310", "Микшерный пульт Yamaha MG10", "Радиосистема Shure",
                           "Наушники Sony WH-1000XM5"), (500, 2500), ("для вечеринки", "с микрофоном", "мощный бас")),
    ItemTemplate("projectors", ("Проектор Epson EH-TW740", "Экран для проектора 120\"", "Проектор XGIMI Horizon"),
                 (800, 2200), ("Full HD", "с HDMI-кабелем", "для домашнего кино"), hourly_share=0.1),
    ItemTemplate("cameras", ("Фотоаппарат Sony A7 III", "Canon EOS R6", "Nikon Z6 II", "Экшн-камера GoPro HERO 11",
                             "Fujifilm X-T4"), (1500, 4500),
                 ("две батареи", "карта памяти 128 ГБ", "пробег 20 тысяч кадров"), deposit_factor=30),
    ItemTemplate("lenses", ("Объектив Sony FE 24-70 f/2.8 GM", "Canon RF 50mm f/1.2", "Sigma 35mm f/1.4 Art"),
                 (800, 3000), ("без царапин", "бленда и крышки", "светосильный"), deposit_factor=30),
    ItemTemplate("drones", ("Квадрокоптер DJI Mini 3 Pro", "DJI Air 2S", "DJI Mavic 3"), (1500, 5000),
                 ("три аккумулятора", "пульт с экраном", "рюкзак"), deposit_factor=30),
    ItemTemplate("lighting", ("Студийный свет Godox SL60", "Штатив Manfrotto", "Стабилизатор DJI RS 3"),
                 (400, 1500), ("с софтбоксом", "для видеосъёмки", "быстрая площадка")),
    ItemTemplate("bikes", ("Велосипед горный Stels Navigator", "Шоссейный велосипед Merida", "Электровелосипед Eltreco",
                           "Детский велосипед 20\"", "Велосипед городской Forward"), (500, 1800),
                 ("шлем в комплекте", "замок", "обслужен в этом сезоне"), hourly_share=0.3),
    ItemTemplate("winter-sports", ("Сноуборд Burton с креплениями", "Горные лыжи Atomic 170 см",
                                   "Беговые лыжи Fischer", "Ботинки для сноуборда 42 размер"), (700, 2000),
                 ("заточены", "с палками", "чехол")),
    ItemTemplate("water-sports", ("Сап-борд надувной Gladiator", "Каяк двухместный", "Надувная лодка ПВХ 300"),
                 (900, 3000), ("насос и весло", "спасжилет", "гермомешок"), hourly_share=0.3),
    ItemTemplate("fitness", ("Беговая дорожка Torneo", "Велотренажёр Oxygen", "Гантели разборные 2×20 кг"),
                 (300, 1200), ("доставка", "складная", "почти новая")),
    ItemTemplate("tents", ("Палатка четырёхместная Tramp", "Палатка двухместная Naturehike",
                           "Шатёр для пикника 3×3 м", "Палатка трёхместная Outventure"), (400, 1500),
                 ("с тентом", "быстрая установка", "водостойкость 3000 мм")),
    ItemTemplate("sleeping-bags", ("Спальник до −10 °C", "Туристический коврик самонадувающийся",
                                   "Спальный мешок-одеяло"), (200, 600),
                 ("стираный", "компрессионный мешок", "лёгкий")),
    ItemTemplate("backpacks", ("Рюкзак туристический 70 л", "Рюкзак Deuter 50+10", "Детская переноска-рюкзак"),
                 (250, 700), ("с накидкой от дождя", "регулируемая спина", "для походов")),
    ItemTemplate("camping-gear", ("Газовая горелка с котелком", "Кемпинговый стол и 4 стула", "Мангал разборный",
                                  "Автохолодильник 35 л"), (200, 900), ("чистый", "в чехле", "для пикника")),
    ItemTemplate("strollers", ("Коляска прогулочная Yoya", "Коляска 2 в 1 Cybex", "Коляска для двойни"),
                 (300, 900), ("дождевик", "сумка для мамы", "лёгкая")),
    ItemTemplate("car-seats", ("Автокресло 0–13 кг Britax", "Автокресло 9–36 кг", "Бустер детский"),
                 (200, 600), ("isofix", "чехол постиран", "не было в ДТП")),
    ItemTemplate("toys", ("Детский электромобиль", "Надувной батут", "Набор LEGO Technic"), (300, 1500),
                 ("для праздника", "заряжен", "все детали на месте")),
    ItemTemplate("scooters", ("Электросамокат Xiaomi Pro 2", "Электросамокат Ninebot Max", "Самокат детский"),
                 (500, 1500), ("запас хода 40 км", "шлем", "зарядка"), hourly_share=0.4),
    ItemTemplate("car-accessories", ("Автобокс на крышу 430 л", "Багажник на крышу Thule", "Велокрепление на фаркоп"),
                 (400, 1200), ("ключи", "инструкция по установке", "универсальный")),
    ItemTemplate("trailers", ("Прицеп легковой 2×1,3 м", "Прицеп для лодки", "Прицеп с тентом"), (900, 2500),
                 ("документы", "СТС", "проверена сцепка")),
    ItemTemplate("event-decor", ("Арка для свадьбы", "Фотозона с цифрами", "Гирлянды и шары — набор"),
                 (500, 3000), ("доставка и монтаж", "для дня рождения", "свадебный")),
    ItemTemplate("sound-light", ("Световое оборудование для вечеринки", "Караоке-система", "Генератор дыма"),
                 (800, 4000), ("с оператором по запросу", "пульт", "на 50 гостей"), hourly_share=0.5),
    ItemTemplate("event-furniture", ("Стулья складные, 20 шт.", "Банкетный стол 180 см", "Шатёр 6×12 м"),
                 (400, 6000), ("доставка", "чехлы на стулья", "для банкета")),
    ItemTemplate("costumes", ("Костюм Деда Мороза", "Карнавальный костюм супергероя", "Платье для фотосессии"),
                 (300, 1500), ("химчистка после каждого клиента", "размер M", "с аксессуарами")),
    ItemTemplate("cleaning", ("Моющий пылесос Karcher Puzzi", "Пароочиститель Karcher SC 4",
                              "Мойка высокого давления"),
                 (500, 1300), ("со средством", "насадки", "инструкция")),
    ItemTemplate("appliances", ("Швейная машина Janome", "Посудомоечная машина настольная", "Кофемашина DeLonghi"),
                 (300, 1000), ("проверена", "в коробке", "с инструкцией")),
)

DESCRIPTION_OPENERS = (
    "Сдаю в аренду {name}.",
    "{name} — в отличном состоянии.",
    "Предлагаю {name} на любой срок.",
    "Аренда: {name}, забрать можно сегодня.",
)
DESCRIPTION_CLOSERS = (
    "Самовывоз от метро, возможна доставка.",
    "Перед выдачей проверяю и показываю, как пользоваться.",
    "Скидки при аренде на неделю и дольше.",
    "Пишите в чат — отвечаю быстро.",
    "Залог возвращаю сразу после возврата вещи.",
)

# Demand per category for the seeded rental histories (sharehub/seed/rentals.py): a relative
# request rate per listing, and the season it follows.
#   category: (popularity, season)
DEMAND: dict[str, tuple[float, str]] = {
    "power-tools": (1.8, "building"), "hand-tools": (0.9, "building"), "garden-tools": (1.2, "garden"),
    "construction": (1.0, "building"), "laptops": (0.8, "indoor"), "consoles": (1.3, "indoor"),
    "audio": (1.1, "festive"), "projectors": (0.9, "indoor"), "cameras": (1.2, "travel"),
    "lenses": (0.8, "travel"), "drones": (0.9, "travel"), "lighting": (0.6, "flat"), "bikes": (1.5, "summer"),
    "winter-sports": (1.1, "winter"), "water-sports": (1.2, "summer"), "fitness": (0.5, "flat"),
    "tents": (1.4, "summer"), "sleeping-bags": (1.0, "summer"), "backpacks": (0.8, "summer"),
    "camping-gear": (1.1, "summer"), "strollers": (0.7, "flat"), "car-seats": (0.9, "flat"),
    "toys": (0.8, "festive"), "scooters": (1.2, "summer"), "car-accessories": (1.0, "travel"),
    "trailers": (0.9, "travel"), "event-decor": (0.8, "festive"), "sound-light": (1.0, "festive"),
    "event-furniture": (0.9, "festive"), "costumes": (0.7, "festive"), "cleaning": (1.3, "building"),
    "appliances": (0.5, "flat"),
}

# Month-of-year demand multipliers, January first (about 1 on average over the year).
SEASONS: dict[str, tuple[float, ...]] = {
    "flat": (1.0,) * 12,
    "summer": (0.3, 0.3, 0.5, 0.8, 1.3, 1.8, 2.0, 1.9, 1.2, 0.7, 0.4, 0.4),
    "winter": (2.0, 2.0, 1.4, 0.4, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.3, 2.2),
    "garden": (0.2, 0.2, 0.6, 1.5, 1.9, 1.6, 1.4, 1.4, 1.4, 1.0, 0.4, 0.2),
    "building": (0.6, 0.6, 0.8, 1.2, 1.4, 1.3, 1.3, 1.3, 1.2, 1.0, 0.7, 0.6),
    "travel": (0.7, 0.7, 0.8, 0.9, 1.1, 1.3, 1.4, 1.3, 1.1, 0.9, 0.8, 1.0),
    "indoor": (1.3, 1.2, 1.1, 0.9, 0.8, 0.7, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4),
    # New Year parties in December, weddings and birthdays in the summer.
    "festive": (0.9, 0.7, 0.9, 0.8, 1.0, 1.3, 1.2, 1.1, 1.0, 0.9, 1.2, 2.4),
}

DECLINE_REASONS = (
    "Вещь в ремонте",
    "Уезжаю в эти даты, не смогу передать",
    "Уже договорился с другим арендатором",
    "На эти дни вещь нужна мне самому",
    "Далеко ехать до места встречи",
)
