-- 0004: listings ("ads"), their categories and cancellation policies.
-- Why: a listing is an entity owned by a shard actor (actors/listing.py); this is its row. The
-- public content (title, description, photos) stays visible while an edit of a published listing
-- waits for review in `pending_revision`. Categories and cancellation policies are data, seeded
-- here in Russian and English, so adding one is a migration, not a code change.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE categories (
    id        text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]+$'),
    parent_id text REFERENCES categories (id),
    name_ru   text NOT NULL,
    name_en   text NOT NULL,
    position  integer NOT NULL DEFAULT 0
);

INSERT INTO categories (id, parent_id, name_ru, name_en, position) VALUES
    ('tools', NULL, 'Инструменты', 'Tools', 1),
    ('power-tools', 'tools', 'Электроинструмент', 'Power tools', 1),
    ('hand-tools', 'tools', 'Ручной инструмент', 'Hand tools', 2),
    ('garden-tools', 'tools', 'Садовая техника', 'Garden equipment', 3),
    ('construction', 'tools', 'Строительное оборудование', 'Construction equipment', 4),
    ('electronics', NULL, 'Электроника', 'Electronics', 2),
    ('laptops', 'electronics', 'Ноутбуки и планшеты', 'Laptops and tablets', 1),
    ('consoles', 'electronics', 'Игровые приставки', 'Game consoles', 2),
    ('audio', 'electronics', 'Аудиотехника', 'Audio', 3),
    ('projectors', 'electronics', 'Проекторы и экраны', 'Projectors and screens', 4),
    ('photo-video', NULL, 'Фото и видео', 'Photo and video', 3),
    ('cameras', 'photo-video', 'Фотоаппараты и камеры', 'Cameras', 1),
    ('lenses', 'photo-video', 'Объективы', 'Lenses', 2),
    ('drones', 'photo-video', 'Дроны', 'Drones', 3),
    ('lighting', 'photo-video', 'Свет и штативы', 'Lighting and tripods', 4),
    ('sport', NULL, 'Спорт', 'Sport', 4),
    ('bikes', 'sport', 'Велосипеды', 'Bicycles', 1),
    ('winter-sports', 'sport', 'Лыжи и сноуборды', 'Skis and snowboards', 2),
    ('water-sports', 'sport', 'Сапы, каяки, лодки', 'SUP boards, kayaks, boats', 3),
    ('fitness', 'sport', 'Тренажёры', 'Fitness equipment', 4),
    ('tourism', NULL, 'Туризм', 'Camping and hiking', 5),
    ('tents', 'tourism', 'Палатки и шатры', 'Tents', 1),
    ('sleeping-bags', 'tourism', 'Спальники и коврики', 'Sleeping bags and mats', 2),
    ('backpacks', 'tourism', 'Рюкзаки', 'Backpacks', 3),
    ('camping-gear', 'tourism', 'Кемпинговое снаряжение', 'Camping gear', 4),
    ('kids', NULL, 'Детские товары', 'Kids', 6),
    ('strollers', 'kids', 'Коляски', 'Strollers', 1),
    ('car-seats', 'kids', 'Автокресла', 'Car seats', 2),
    ('toys', 'kids', 'Игрушки и игры', 'Toys and games', 3),
    ('transport', NULL, 'Транспорт', 'Transport', 7),
    ('scooters', 'transport', 'Самокаты и электросамокаты', 'Scooters', 1),
    ('car-accessories', 'transport', 'Автобоксы и багажники', 'Roof boxes and racks', 2),
    ('trailers', 'transport', 'Прицепы', 'Trailers', 3),
    ('events', NULL, 'Для праздников и мероприятий', 'Parties and events', 8),
    ('event-decor', 'events', 'Декор', 'Decorations', 1),
    ('sound-light', 'events', 'Звук и свет', 'Sound and light', 2),
    ('event-furniture', 'events', 'Мебель для мероприятий', 'Event furniture', 3),
    ('costumes', 'events', 'Костюмы', 'Costumes', 4),
    ('home', NULL, 'Для дома', 'Home', 9),
    ('cleaning', 'home', 'Уборка и химчистка', 'Cleaning', 1),
    ('appliances', 'home', 'Бытовая техника', 'Appliances', 2);

CREATE TABLE cancellation_policies (
    code    text PRIMARY KEY,
    name_ru text NOT NULL,
    name_en text NOT NULL,
    -- Refund percent by how long before the start the renter cancels, longest notice first:
    -- [{"hours_before": 24, "refund_percent": 100}, {"hours_before": 0, "refund_percent": 0}]
    tiers   jsonb NOT NULL
);

INSERT INTO cancellation_policies (code, name_ru, name_en, tiers) VALUES
    ('flexible', 'Гибкие условия', 'Flexible',
     '[{"hours_before": 24, "refund_percent": 100}, {"hours_before": 0, "refund_percent": 0}]'),
    ('moderate', 'Умеренные условия', 'Moderate',
     '[{"hours_before": 120, "refund_percent": 100}, {"hours_before": 24, "refund_percent": 50}, {"hours_before": 0, "refund_percent": 0}]'),
    ('strict', 'Строгие условия', 'Strict',
     '[{"hours_before": 168, "refund_percent": 50}, {"hours_before": 0, "refund_percent": 0}]');

CREATE TABLE listings (
    id                  uuid PRIMARY KEY,
    owner_id            uuid NOT NULL REFERENCES users (id),
    status              text NOT NULL CHECK (status IN
                        ('draft', 'pending_review', 'rejected', 'published', 'paused', 'archived')),
    title               text NOT NULL,
    description         text NOT NULL,
    photos              uuid[] NOT NULL DEFAULT '{}',
    category_id         text NOT NULL REFERENCES categories (id),
    attributes          jsonb NOT NULL DEFAULT '{}',
    city                text NOT NULL,
    lat                 double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon                 double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    rental_unit         text NOT NULL CHECK (rental_unit IN ('day', 'hour')),
    price_per_unit      bigint NOT NULL CHECK (price_per_unit > 0),  -- kopecks
    discounts           jsonb NOT NULL DEFAULT '[]',
    price_overrides     jsonb NOT NULL DEFAULT '[]',
    deposit             bigint NOT NULL DEFAULT 0 CHECK (deposit >= 0),  -- kopecks
    quantity            integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 1000),
    min_units           integer NOT NULL DEFAULT 1 CHECK (min_units >= 1),
    max_units           integer CHECK (max_units IS NULL OR max_units >= min_units),
    min_notice_hours    integer NOT NULL DEFAULT 0 CHECK (min_notice_hours >= 0),
    buffer_hours        integer NOT NULL DEFAULT 0 CHECK (buffer_hours >= 0),
    instant_book        boolean NOT NULL DEFAULT false,
    cancellation_policy text NOT NULL REFERENCES cancellation_policies (code),
    blocked_periods     jsonb NOT NULL DEFAULT '[]',
    -- A content edit of a published listing, waiting for a moderator; null when none.
    pending_revision    jsonb,
    rejection_reason    text,
    version             bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    published_at        timestamptz
);
CREATE INDEX listings_owner ON listings (owner_id, created_at DESC);
CREATE INDEX listings_review_queue ON listings (updated_at)
    WHERE status = 'pending_review' OR pending_revision IS NOT NULL;
CREATE INDEX listings_published ON listings (category_id) WHERE status = 'published';
