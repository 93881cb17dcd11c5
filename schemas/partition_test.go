package schemas

import (
	"math/rand"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// u32 reinterprets a hash written as unsigned hex as the Java int.
func u32(h uint32) int32 { return int32(h) }

func TestMurmur2Vectors(t *testing.T) {
	tests := []struct {
		key  string
		want int32
	}{
		// Apache Kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java testMurmur2.
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
		// librdkafka src/rdmurmur2.c unittest_murmur2 (expected values from Java).
		{"kafka", u32(0xd067cf64)},
		{"giberish123456789", u32(0x8f552b0c)},
		{"1234", u32(0x9fc97b14)},
		{"234", u32(0xe7c009ca)},
		{"34", u32(0x873930da)},
		{"4", u32(0x5a4b5ca1)},
		{"PreAmbleWillBeRemoved,ThePrePartThatIs", u32(0x78424f1c)},
		{"reAmbleWillBeRemoved,ThePrePartThatIs", u32(0x4a62b377)},
		{"eAmbleWillBeRemoved,ThePrePartThatIs", u32(0xe0e4e09e)},
		{"AmbleWillBeRemoved,ThePrePartThatIs", u32(0x62b8b43f)},
		{"", 0x106e08d9},
	}
	for _, tt := range tests {
		if got := Murmur2([]byte(tt.key)); got != tt.want {
			t.Errorf("Murmur2(%q) = %d (%#x), want %d (%#x)", tt.key, got, uint32(got), tt.want, uint32(tt.want))
		}
	}
}

func TestPartitionKnownValues(t *testing.T) {
	// toPositive(murmur2) % n, computed from the vectors above.
	tests := []struct {
		key  string
		n    int32
		want int32
	}{
		{"21", 1, 0},
		{"kafka", 1 << 30, 0x5067cf64 % (1 << 30)},
		{"foobar", 12, (-790332482 & 0x7fffffff) % 12},
		{"abc", 10, 479470107 % 10},
	}
	for _, tt := range tests {
		if got := Partition([]byte(tt.key), tt.n); got != tt.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
}

func TestPartitionAgreesWithFranzGo(t *testing.T) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("kanal.shop.users")
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 50000; i++ {
		var key []byte
		if i%2 == 0 {
			key = AppendKey(nil, "shop", "users", []any{r.Int63()})
		} else {
			key = make([]byte, r.Intn(64))
			r.Read(key)
		}
		n := int32(1 + r.Intn(200))
		want := p.Partition(&kgo.Record{Key: key}, int(n))
		if got := Partition(key, n); int(got) != want {
			t.Fatalf("Partition(%q, %d) = %d, franz-go says %d", key, n, got, want)
		}
	}
}

func TestPartitionRejectsNoPartitions(t *testing.T) {
	for _, n := range []int32{0, -3} {
		if got := Partition([]byte("k"), n); got != -1 {
			t.Errorf("Partition(k, %d) = %d, want -1", n, got)
		}
	}
}
