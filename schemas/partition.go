package schemas

// Murmur2 is the 32-bit murmur2 hash exactly as Apache Kafka's Java client computes it
// (org.apache.kafka.common.utils.Utils.murmur2: seed 0x9747b28c, little-endian words),
// returned as the Java int it produces.
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	i := 0
	for ; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Partition returns the partition Kafka's default partitioner chooses for a record
// with a non-null key among numPartitions partitions: toPositive(murmur2(key)) %
// numPartitions, as the Java client (and franz-go's StickyKeyPartitioner, which the
// producer uses, and librdkafka's "murmur2_random") computes it. Tools can use it to
// find the partition that holds a row's changes without asking a producer.
//
// It returns -1 when numPartitions is not positive.
func Partition(key []byte, numPartitions int32) int32 {
	if numPartitions <= 0 {
		return -1
	}
	return (Murmur2(key) & 0x7fffffff) % numPartitions
}
