//go:build !unix

package consumer

// tryLock cannot lock files here: every Runner takes the first slot, so Runners
// of one host sharing a group need an explicit instance_id each.
func tryLock(string) (unlock func(), ok bool, err error) { return nil, true, nil }
