package secret_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/secret"
)

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withNewline := write("pw", "s3cret-value\r\n")
	empty := write("empty", "\n")
	if pw, err := secret.Password("source.password", "", withNewline); err != nil || pw != "s3cret-value" {
		t.Fatalf("from file: %q, %v", pw, err)
	}
	if pw, err := secret.Password("source.password", "inline", ""); err != nil || pw != "inline" {
		t.Fatalf("inline: %q, %v", pw, err)
	}
	for _, tc := range []struct {
		value, file, says string
	}{
		{"inline", withNewline, "source.password_file: source.password is set too"},
		{"", filepath.Join(dir, "missing"), "source.password_file: " + filepath.Join(dir, "missing") + ": no such file"},
		{"", empty, "is empty"},
	} {
		_, err := secret.Password("source.password", tc.value, tc.file)
		if err == nil || !errors.Is(err, secret.ErrConfig) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: got %v, want %q", tc, err, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%+v: error shows the password", tc)
		}
	}
}
