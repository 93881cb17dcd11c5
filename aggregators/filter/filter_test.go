package filter_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanal-cdc/kanal/aggregators/filter"
	"github.com/kanal-cdc/kanal/schemas"
)

// row holds a value of every type a change carries, and the renderings of dates
// and times kanal's decoders produce.
var row = map[string]any{
	"status": "settled", "amount": schemas.Decimal("12.50"), "n": int64(7), "u": uint64(18446744073709551615),
	"f": float64(0.1), "f32": float32(1.5), "nul": nil, "num_text": " 12 ", "txt": "abc", "bin": []byte("abc"),
	"created_at": "2024-03-05 17:04:05.123456", "d": "2024-03-05", "ts": "2024-03-05T17:04:05Z", "zero": "0000-00-00",
	"zmonth": "2024-00-10", "bad_date": "yesterday", "i": 3,
}

// evalCases cover each operator with SQL's NULL semantics (a comparison with NULL
// is unknown, NOT of unknown is unknown, and only true matches), numbers compared
// exactly (DECIMAL text, uint64 beyond float64, exponents), text against numbers,
// the derived functions, and errors that name the missing column.
var evalCases = []struct {
	src  string
	want bool
	err  string // "" for none
}{
	{"status = 'settled'", true, ""},
	{"status != 'settled'", false, ""},
	{"status <> 'x'", true, ""},
	{"amount > 12.5", false, ""},
	{"amount >= 12.50", true, ""},
	{"amount < 1e2", true, ""},
	{"amount = 12.5", true, ""},
	{"n = 7.0", true, ""},
	{"n BETWEEN 1 AND 7", true, ""},
	{"n NOT BETWEEN 1 AND 6", true, ""},
	{"n IN (1, 2, 7)", true, ""},
	{"n NOT IN (1, 2)", true, ""},
	{"n IN (1, NULL)", false, ""},
	{"n NOT IN (1, NULL)", false, ""},
	{"n IN (7, NULL)", true, ""},
	{"nul IS NULL", true, ""},
	{"nul IS NOT NULL", false, ""},
	{"n IS NULL", false, ""},
	{"nul = 1", false, ""},
	{"NOT nul = 1", false, ""},
	{"nul = 1 OR n = 7", true, ""},
	{"nul = 1 AND n = 8", false, ""},
	{"nul = 1 AND n = 7", false, ""},
	{"nul = 1 OR n = 8", false, ""},
	{"NOT (n = 7)", false, ""},
	{"NOT NOT n = 7", true, ""},
	{"u > 18446744073709551614", true, ""},
	{"u = 18446744073709551615", true, ""},
	{"f = 0.1", true, ""},
	{"f32 = 1.5", true, ""},
	{"num_text = 12", true, ""},
	{"num_text = '12'", false, ""},
	{"txt > 5", true, ""},
	{"txt < 'abd'", true, ""},
	{"bin = 'abc'", true, ""},
	{"bin = 5", false, ""},
	{"i = 3", true, ""},
	{"amount = -12.5", false, ""},
	{"-1 < n", true, ""},
	{"+7 = n", true, ""},
	{".5 < n", true, ""},
	{"n > 1e-3", true, ""},
	{"`n` = 7", true, ""},
	{"\"n\" = 7", true, ""},
	{"day(created_at) = '2024-03-05'", true, ""},
	{"month(created_at) = '2024-03-01'", true, ""},
	{"year(created_at) = 2024", true, ""},
	{"hour(created_at) = '2024-03-05 17:00:00'", true, ""},
	{"day(d) = '2024-03-05'", true, ""},
	{"hour(ts) = '2024-03-05 17:00:00'", true, ""},
	{"day(zero) IS NULL", true, ""},
	{"day(zmonth) IS NULL", true, ""},
	{"day(nul) IS NULL", true, ""},
	{"day(bad_date) IS NULL", false, "day(): \"yesterday\" is not a date or time"},
	{"day(n) IS NULL", false, "day() needs a DATE, DATETIME or TIMESTAMP value, got int64"},
	{"missing = 1", false, "no such column \"missing\""},
	{"day(missing) = 1", false, "no such column \"missing\""},
	{"n = 7 AND missing = 1", false, "no such column \"missing\""},
	{"n = 8 AND missing = 1", false, ""},
	{"n = 7 OR missing = 1", true, ""},
	{"status = 'it''s'", false, ""},
	{"n BETWEEN NULL AND 9", false, ""},
	{"n BETWEEN 8 AND NULL", false, ""},
	{"n NOT BETWEEN 8 AND NULL", true, ""},
	{"STATUS = 'settled'", false, "no such column \"STATUS\""},
	{"status = 'settled' and n = 7 or n = 9", true, ""},
	{"(n = 1 OR n = 7) AND status = 'settled'", true, ""},
	{"n = 1 OR n = 7 AND status = 'x'", false, ""},
	{"n=7", true, ""},
	{"n\t=\n7", true, ""},
	{"n = 0.000000000000000000000000000000007e33", true, ""},
	{"amount = 12.500", true, ""},
	{"n = NULL", false, ""},
	{"NULL = NULL", false, ""},
	{"7 = 7", true, ""},
	{"n = 9999999999999999999999999999999999999999", false, ""},
}

var parseErrors = []struct{ src, err string }{
	{"", "expected a column, a literal or a function at end"},
	{"n", "expected a comparison at end"},
	{"n =", "expected a column, a literal or a function at end"},
	{"n = = 1", "expected a column, a literal or a function at 4 (\"=\")"},
	{"(n = 1", "expected ) at end"},
	{"n = 1)", "unexpected input at 5 (\")\")"},
	{"NOT n", "expected a comparison at end"},
	{"(n)", "expected a comparison at 2 (\")\")"},
	{"n IS 1", "expected NULL after IS at 5 (\"1\")"},
	{"n NOT LIKE 1", "expected IN or BETWEEN after NOT at 6 (\"LIKE\")"},
	{"n IN 1", "expected ( after IN at 5 (\"1\")"},
	{"n IN (1 2)", "expected , or ) in IN list at 8 (\"2\")"},
	{"n BETWEEN 1", "expected AND in BETWEEN at end"},
	{"n BETWEEN 1 OR 2", "expected AND in BETWEEN at 12 (\"OR\")"},
	{"'unterminated", "unterminated string at 0"},
	{"`unterminated", "unterminated quoted name at 0"},
	{"``= 1", "empty quoted name at 0"},
	{"n = 1 ;", "unexpected ';' at 6"},
	{"foo(n) = 1", "unknown function \"foo\" at 0 (day, month, year, hour)"},
	{"day(1) = 1", "day() takes a column name, at 4"},
	{"day(and) = 1", "day() takes a column name, at 4"},
	{"day(n, m) = 1", "expected ) after day(n at 5 (\",\")"},
	{"and = 1", "unexpected keyword at 0 (\"and\")"},
	{"n = -x", "expected a number after - at 5 (\"x\")"},
	{"1.2.3 = 1", "bad number \"1.2.3\" at 0"},
	{"n = 1e", "unexpected input at 5 (\"e\")"},
	{"n = 1e+", "unexpected input at 5 (\"e\")"},
	{"n = #", "unexpected '#' at 4"},
	{"n = 1 AND", "expected a column, a literal or a function at end"},
	{"n = 1 OR OR n = 2", "unexpected keyword at 9 (\"OR\")"},
	{"n = 1e1001", "bad number \"1e1001\" at 4"},
}

func TestMatch(t *testing.T) {
	for _, c := range evalCases {
		cond, err := filter.Parse(c.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.src, err)
			continue
		}
		got, err := cond.Match(row)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.src, err)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%q: error %v, want %q", c.src, err, c.err)
		case got != c.want:
			t.Errorf("%q matches %v, want %v", c.src, got, c.want)
		}
	}
}

func TestMissingColumnIsErrNoColumn(t *testing.T) {
	cond, err := filter.Parse("n = 7 AND missing = 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cond.Match(row); !errors.Is(err, filter.ErrNoColumn) {
		t.Fatalf("error %v does not wrap ErrNoColumn", err)
	}
}

// TestParseErrors: errors say what was expected and where (byte offset, token).
func TestParseErrors(t *testing.T) {
	for _, c := range parseErrors {
		_, err := filter.Parse(c.src)
		if err == nil || err.Error() != c.err {
			t.Errorf("Parse(%q): %v, want %q", c.src, err, c.err)
		}
	}
	if _, err := filter.Parse("n"); err == nil {
		t.Fatal("a bare column parsed as a condition")
	}
}

func TestParseGroup(t *testing.T) {
	for _, c := range []struct {
		item string
		want filter.Group
		err  string
	}{
		{"user_id", filter.Group{Column: "user_id"}, ""},
		{"`user id`", filter.Group{Column: "user id"}, ""},
		{`"x"`, filter.Group{Column: "x"}, ""},
		{"user_id AS u", filter.Group{Column: "user_id", As: "u"}, ""},
		{"user_id as `the u`", filter.Group{Column: "user_id", As: "the u"}, ""},
		{"day(created_at)", filter.Group{Column: "created_at", Func: "day"}, ""},
		{"DAY(created_at) AS d", filter.Group{Column: "created_at", Func: "day", As: "d"}, ""},
		{"year(`c`) AS y", filter.Group{Column: "c", Func: "year", As: "y"}, ""},
		{"'lit'", filter.Group{}, "a group is a column or day/month/year/hour(column), not a literal"},
		{"NULL", filter.Group{}, "a group is a column or day/month/year/hour(column), not a literal"},
		{"foo(c)", filter.Group{}, `unknown function "foo" at 0 (day, month, year, hour)`},
		{"c d", filter.Group{}, `a group is a column or day/month/year/hour(column) at 2 ("d")`},
		{"a = 1", filter.Group{}, `a group is a column or day/month/year/hour(column) at 2 ("=")`},
		{"c AS x AS y", filter.Group{}, `a group is a column or day/month/year/hour(column) at 2 ("AS")`},
		{"AS x", filter.Group{}, `unexpected keyword at 0 ("AS")`},
		{"", filter.Group{}, "expected a column, a literal or a function at end"},
	} {
		got, err := filter.ParseGroup(c.item)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("ParseGroup(%q): %v, want %q", c.item, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseGroup(%q): %v", c.item, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("ParseGroup(%q) (-want +got):\n%s", c.item, d)
		}
	}
}

func TestGroupValue(t *testing.T) {
	r := map[string]any{"c": "2023-12-31 23:59:59", "z": "0000-00-00 00:00:00", "nul": nil}
	for _, c := range []struct {
		fn, col string
		want    any
	}{
		{"day", "c", "2023-12-31"}, {"month", "c", "2023-12-01"}, {"year", "c", int64(2023)},
		{"hour", "c", "2023-12-31 23:00:00"}, {"day", "z", nil}, {"hour", "nul", nil},
	} {
		got, err := filter.Group{Column: c.col, Func: c.fn}.Value(r)
		if err != nil || got != c.want {
			t.Errorf("%s(%s) = %v, %v; want %v", c.fn, c.col, got, err, c.want)
		}
	}
	if _, err := (filter.Group{Column: "missing", Func: "day"}).Value(r); !errors.Is(err, filter.ErrNoColumn) {
		t.Errorf("a missing column gives %v", err)
	}
}

func TestParseMeasure(t *testing.T) {
	for _, c := range []struct {
		item string
		want filter.Measure
		err  bool
	}{
		{"count", filter.Measure{Count: true}, false},
		{"COUNT", filter.Measure{Count: true}, false},
		{"count(*)", filter.Measure{Count: true}, false},
		{"count AS n", filter.Measure{Count: true, As: "n"}, false},
		{"count(*) AS `n n`", filter.Measure{Count: true, As: "n n"}, false},
		{"sum(amount)", filter.Measure{Column: "amount"}, false},
		{"SUM(amount) AS total", filter.Measure{Column: "amount", As: "total"}, false},
		{"sum(`a b`)", filter.Measure{Column: "a b"}, false},
		{"sum(a) AS", filter.Measure{}, true},
		{"sum(1)", filter.Measure{}, true},
		{"sum(a, b)", filter.Measure{}, true},
		{"count(a)", filter.Measure{}, true},
		{"avg(a)", filter.Measure{}, true},
		{"sum(a)+1", filter.Measure{}, true},
		{"count AS 'x'", filter.Measure{}, true},
		{"", filter.Measure{}, true},
	} {
		got, err := filter.ParseMeasure(c.item)
		if c.err {
			want := `"` + c.item + `": a measure is count, count(*) or sum(column), optionally AS name`
			if c.item == "" {
				want = `"": a measure is count, count(*) or sum(column), optionally AS name`
			}
			if err == nil || err.Error() != want {
				t.Errorf("ParseMeasure(%q): %v, want %q", c.item, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseMeasure(%q): %v", c.item, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("ParseMeasure(%q) (-want +got):\n%s", c.item, d)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
		zero bool
		err  bool
	}{
		{"2024-03-05", time.Date(2024, 3, 5, 0, 0, 0, 0, time.UTC), false, false},
		{"2024-03-05 17:04:05.123456", time.Date(2024, 3, 5, 17, 4, 5, 123456000, time.UTC), false, false},
		{"2024-03-05T17:04:05+02:00", time.Date(2024, 3, 5, 15, 4, 5, 0, time.UTC), false, false},
		{"0000-00-00 00:00:00", time.Time{}, true, false},
		{"2024-00-10", time.Time{}, true, false},
		{"2024-03-00", time.Time{}, true, false},
		{"yesterday", time.Time{}, false, true},
	} {
		got, zero, err := filter.ParseTime(c.in)
		if (err != nil) != c.err || zero != c.zero || !got.Equal(c.want) {
			t.Errorf("ParseTime(%q) = %v, %v, %v", c.in, got, zero, err)
		}
	}
}
