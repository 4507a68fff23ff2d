-- Demo data for `make run` (lomash seed): three showrooms, six consultants, their
-- weekly hours and a blocked day, six kitchen and bedroom ranges. Idempotent: loading
-- it again changes nothing.
INSERT INTO showrooms (id, name, address, city, postcode, timezone, opening_hours, phone, email)
VALUES
    ('manchester', 'Lomash Wood Manchester', '12 Deansgate', 'Manchester', 'M3 2BW',
     'Europe/London', '{"mon-sat": "09:00-18:00", "sun": "10:00-16:00"}',
     '0161 555 0100', 'manchester@lomashwood.example'),
    ('leeds', 'Lomash Wood Leeds', '40 Briggate', 'Leeds', 'LS1 6HD',
     'Europe/London', '{"mon-sat": "09:00-18:00"}',
     '0113 555 0140', 'leeds@lomashwood.example'),
    ('london-islington', 'Lomash Wood Islington', '210 Upper Street', 'London', 'N1 1RL',
     'Europe/London', '{"mon-sun": "10:00-19:00"}',
     '020 7555 0123', 'islington@lomashwood.example')
ON CONFLICT (id) DO NOTHING;

INSERT INTO consultants (id, name, email, showroom_id, specialisations)
VALUES
    ('amira-khan', 'Amira Khan', 'amira.khan@lomashwood.example', 'manchester',
     '{KITCHEN,BEDROOM}'),
    ('tom-hughes', 'Tom Hughes', 'tom.hughes@lomashwood.example', 'manchester', '{KITCHEN}'),
    ('grace-okafor', 'Grace Okafor', 'grace.okafor@lomashwood.example', 'leeds',
     '{KITCHEN,BEDROOM}'),
    ('daniel-price', 'Daniel Price', 'daniel.price@lomashwood.example', 'leeds', '{BEDROOM}'),
    ('sofia-rossi', 'Sofia Rossi', 'sofia.rossi@lomashwood.example', 'london-islington',
     '{KITCHEN,BEDROOM}'),
    ('owen-evans', 'Owen Evans', 'owen.evans@lomashwood.example', 'london-islington',
     '{KITCHEN}')
ON CONFLICT (id) DO NOTHING;

-- Weekdays 09:00-17:00 for everyone; Saturdays 10:00-16:00 for some, Sundays for one.
INSERT INTO consultant_hours (consultant_id, weekday, starts, ends)
SELECT c.id, d.weekday, '09:00', '17:00'
FROM consultants c CROSS JOIN generate_series(0, 4) AS d(weekday)
WHERE c.id IN ('amira-khan', 'tom-hughes', 'grace-okafor', 'daniel-price', 'sofia-rossi',
               'owen-evans')
ON CONFLICT DO NOTHING;
INSERT INTO consultant_hours (consultant_id, weekday, starts, ends)
VALUES ('amira-khan', 5, '10:00', '16:00'), ('grace-okafor', 5, '10:00', '16:00'),
       ('sofia-rossi', 5, '10:00', '16:00'), ('sofia-rossi', 6, '11:00', '15:00')
ON CONFLICT DO NOTHING;

INSERT INTO consultant_blocked_days (consultant_id, day, reason)
VALUES ('tom-hughes', '2026-12-25', 'Christmas Day'), ('tom-hughes', '2026-12-26', 'Boxing Day')
ON CONFLICT DO NOTHING;

-- Kitchen and bedroom ranges (prices in pence, GBP, VAT included at order time).
INSERT INTO products (id, name, category, description, price_pence)
VALUES
    ('hartley-shaker-kitchen', 'Hartley Shaker Kitchen', 'KITCHEN',
     'In-frame shaker doors in painted oak, soft-close drawers, quartz worktops.', 1250000),
    ('linea-handleless-kitchen', 'Linea Handleless Kitchen', 'KITCHEN',
     'Matt lacquer slab doors with a true handleless rail, integrated appliances.', 1480000),
    ('oakridge-country-kitchen', 'Oakridge Country Kitchen', 'KITCHEN',
     'Solid oak cabinetry with a freestanding island and butler sink.', 1625000),
    ('aria-fitted-wardrobe', 'Aria Fitted Wardrobe', 'BEDROOM',
     'Floor-to-ceiling sliding wardrobe with mirrored doors and LED rails.', 420000),
    ('somerset-bedroom-suite', 'Somerset Bedroom Suite', 'BEDROOM',
     'Hinged wardrobes, chest of drawers and bedside tables in painted ash.', 685000),
    ('nook-walk-in-wardrobe', 'Nook Walk-in Wardrobe', 'BEDROOM',
     'Open shelving, drawers and hanging space for a dressing room.', 530000)
ON CONFLICT (id) DO NOTHING;
