package sinkconf

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryValidate(t *testing.T) {
	for _, tc := range []struct {
		r       RetryConfig
		wantErr string
	}{
		{RetryConfig{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second}, ""},
		{RetryConfig{MaxAttempts: 1, InitialInterval: time.Second, MaxInterval: time.Second}, ""},
		{RetryConfig{MaxAttempts: 0, InitialInterval: time.Second, MaxInterval: time.Second}, "retry.max_attempts: must be >= 1"},
		{RetryConfig{MaxAttempts: 3, InitialInterval: 0, MaxInterval: time.Second}, "retry.initial_interval: must be positive"},
		{RetryConfig{MaxAttempts: 3, InitialInterval: -time.Second, MaxInterval: time.Second}, "retry.initial_interval: must be positive"},
		{RetryConfig{MaxAttempts: 3, InitialInterval: time.Second, MaxInterval: time.Millisecond}, "retry.max_interval: must be >= initial_interval"},
	} {
		err := tc.r.Validate("retry")
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tc.r, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("%+v: Validate = %v, want %q", tc.r, err, tc.wantErr)
		}
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	r := RetryConfig{MaxAttempts: 10, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	b := r.Backoff()
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
		if err := b.Sleep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits = %v, want %v", got, want)
		}
	}
}

func TestBackoffSleepEndsWithContext(t *testing.T) {
	r := RetryConfig{MaxAttempts: 2, InitialInterval: time.Hour, MaxInterval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := r.Backoff()
	if err := b.Sleep(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if b.Next() != time.Hour {
		t.Errorf("an interrupted Sleep doubled the wait to %v", b.Next())
	}
}
