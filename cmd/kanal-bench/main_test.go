package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Mistakes in the invocation are usage errors (exit 2) reported before any
// server starts; the bench's stages themselves are covered by bench's smoke test.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "kanal")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rows", "-1"}, "must not be negative"},
		{[]string{"--runs", "-2"}, "must not be negative"},
		{[]string{"--kanal", filepath.Join(dir, "missing")}, "--kanal"},
		{[]string{"--kanal", notExec}, "--kanal"},
		{[]string{"--stages", "apply,4x"}, "unknown stage \"4x\""},
		{[]string{"--profile-stage", "5"}, "--profile-stage"},
	} {
		var out, errOut bytes.Buffer
		cmd := newCmd(&out, &errOut)
		cmd.SetArgs(tc.args)
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
			continue
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("%v: exit code %d, want 2 (usage) for %v", tc.args, code, err)
		}
	}
}

func TestKanalBinaryExplicit(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kanal")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := kanalBinary(bin)
	if err != nil || got != bin {
		t.Fatalf("kanalBinary(%q) = %q, %v", bin, got, err)
	}
}
