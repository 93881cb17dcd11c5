package consumer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// Values of Config.InstanceID with a meaning of their own.
const (
	// InstanceAuto derives a stable instance id per host: see Config.InstanceID.
	InstanceAuto = "auto"
	// InstanceNone is dynamic group membership: a restarted member is a new
	// member and waits for the group to drop the old one (SessionTimeout).
	InstanceNone = "none"
)

// maxInstanceSlots bounds how many Runners of one host can share a group with
// automatic instance ids.
const maxInstanceSlots = 256

func validInstanceID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// membership is a group member's static identity: its instance id and, for an
// automatic one, the lock that keeps another Runner of this host from taking it.
type membership struct {
	instanceID string // "" = dynamic membership
	unlock     func()
}

func (m membership) release() {
	if m.unlock != nil {
		m.unlock()
	}
}

// resolveMembership returns the instance id the group joins with.
//
// An automatic id must be stable across a crash and restart of the same
// process, yet differ between Runners of the same host in the same group (two
// members with one id fence each other). The host name gives the first; the
// lowest free slot number, held by an exclusive lock on a file for as long as
// the Runner runs, gives the second: the kernel drops the lock when a process
// dies, so its restart finds the same slot free again.
func resolveMembership(cfg *Config, group string) (membership, error) {
	switch cfg.InstanceID {
	case InstanceNone:
		return membership{}, nil
	case InstanceAuto:
	default:
		return membership{instanceID: cfg.InstanceID}, nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	brokers := append([]string(nil), cfg.Kafka.Brokers...)
	sort.Strings(brokers)
	sum := sha256.Sum256([]byte(strings.Join(brokers, ",") + "\x00" + group))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("kanal-instance-locks-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return membership{}, fmt.Errorf("instance_id auto: %w", err)
	}
	base := filepath.Join(dir, hex.EncodeToString(sum[:8]))
	for slot := 0; slot < maxInstanceSlots; slot++ {
		unlock, ok, err := tryLock(fmt.Sprintf("%s-%d.lock", base, slot))
		if err != nil {
			return membership{}, fmt.Errorf("instance_id auto: %w", err)
		}
		if ok {
			return membership{instanceID: fmt.Sprintf("%s-%d", sanitizeInstance(host), slot), unlock: unlock}, nil
		}
	}
	return membership{}, fmt.Errorf("instance_id auto: %d Runners of this host already share group %s", maxInstanceSlots, group)
}

func sanitizeInstance(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
