-- Run once by the mysql image on an empty data directory, after it created
-- the account kanal (MYSQL_USER, password from the kanal_db_password secret)
-- and the database shop (MYSQL_DATABASE).

-- What kanal produce needs: the binlog stream (REPLICATION SLAVE) and the
-- binlog list and position (REPLICATION CLIENT). Streaming reads no table.
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'kanal'@'%';

-- Backfills (kanal snapshot, source.start: snapshot) on MySQL need a watermark
-- table the producer creates and writes one row of per chunk
-- (source.signal_table in kanal.yaml; docs/snapshots.md). They read shop.*,
-- which the image already granted with MYSQL_DATABASE.
GRANT SELECT, INSERT, UPDATE, CREATE ON kanal.* TO 'kanal'@'%';

-- The demo schema: the tables of scripts/demo.sh.
CREATE TABLE shop.users (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100),
  email VARCHAR(200),
  balance DECIMAL(12,2),
  created_at DATETIME(3)
);

CREATE TABLE shop.earnings (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  user_id BIGINT NOT NULL,
  kind ENUM('order','referral','bonus','refund') NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  KEY (user_id)
);
