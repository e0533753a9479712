-- Names are compared case-insensitively by a key the service computes
-- (Unicode lower case), stored beside the name. PostgreSQL's lower() depends
-- on the database's locale (under the C locale it leaves 'É' alone), so an
-- index on lower(name) could disagree with the service about which names
-- are equal.
alter table product add column name_key text;
update product set name_key = lower(name);
alter table product alter column name_key set not null;
alter table product add constraint product_name_key_length check (char_length(name_key) between 1 and 400);
drop index product_manager_name_key;
create unique index product_manager_name_key on product (manager_id, name_key);
