package producer

import (
	"context"
	"fmt"
	"testing"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestSnapReaderReusesEmittedChunk reads a table in chunks the way a backfill
// does, giving each chunk's memory back (recycle) as the session does after
// emitting it: the next chunk is read into that memory, and every chunk holds
// exactly what a reader without reuse reads (text, NULL against empty, numbers,
// DATETIME, the keys), so nothing of a reused chunk leaks into the next.
func TestSnapReaderReusesEmittedChunk(t *testing.T) {
	m := testenv.MariaDB(t)
	m.Exec(t, "CREATE DATABASE reuse")
	m.Exec(t, `CREATE TABLE reuse.t (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4,
		note TEXT CHARACTER SET utf8mb4, amount DECIMAL(10,2) NOT NULL, at DATETIME(6) NOT NULL, kind ENUM('a','b') NOT NULL)`)
	m.Exec(t, `INSERT INTO reuse.t SELECT seq, IF(seq % 7 = 0, NULL, CONCAT('name-', seq, REPEAT('é', seq % 5))),
		IF(seq % 3 = 0, '', REPEAT(CONCAT('n', seq), 1 + seq % 40)), seq / 4, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND,
		IF(seq % 2 = 0, 'a', 'b') FROM reuse.seq_1_to_1000`)
	cfg := DefaultConfig()
	cfg.Source.Name = "reuse"
	cfg.Source.Addr = m.Addr()
	cfg.Source.User = m.User
	cfg.Source.Password = m.Password
	reused, err := NewSourceReader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reused.Close()
	fresh, err := NewSourceReader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx := context.Background()
	render := func(res *chunkRes) []string {
		out := []string{fmt.Sprintf("%q", res.lastRaw())}
		for i := range res.rows {
			row := res.keys[i]
			for _, v := range res.vals[i*res.ncols : (i+1)*res.ncols] {
				row += fmt.Sprintf("|%T:%q", v.Any(), fmt.Sprint(v.Any()))
			}
			out = append(out, row)
		}
		return out
	}
	var after [][]byte
	var recycled *chunkMem
	rows, chunks := 0, 0
	for {
		req := &chunkReq{db: "reuse", table: "t", limit: 128, after: after}
		res := reused.r.read(ctx, req)
		if res.err != nil || res.jobErr != nil {
			t.Fatal(res.err, res.jobErr)
		}
		if recycled != nil && res.rows > 0 && &res.vals[0] != &recycled.vals[:1][0] {
			t.Fatalf("chunk %d was not read into the memory of the chunk emitted before it", chunks)
		}
		want := fresh.r.read(ctx, &chunkReq{db: "reuse", table: "t", limit: 128, after: after})
		if want.err != nil || want.jobErr != nil {
			t.Fatal(want.err, want.jobErr)
		}
		got, exp := render(res), render(want)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("chunk %d read into reused memory:\n%q\nwant\n%q", chunks, got, exp)
		}
		rows += res.rows
		chunks++
		if !res.more {
			break
		}
		after = cloneRawKey(res.lastRaw())
		recycled = &chunkMem{vals: res.vals}
		reused.r.recycle(res)
		if res.vals != nil || res.text != nil {
			t.Fatal("recycle left the chunk its memory")
		}
	}
	if rows != 1000 || chunks != 8 {
		t.Fatalf("read %d rows in %d chunks, want 1000 in 8", rows, chunks)
	}
}
