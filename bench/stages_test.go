package bench

import (
	"strings"
	"testing"
)

// TestStageSelection: --stages names stage groups or single apply stages;
// "apply" stands for every apply stage; a name that is no stage is refused before
// anything starts.
func TestStageSelection(t *testing.T) {
	o := Options{Stages: []string{"throughput", "apply"}}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if !o.runs("throughput") || o.runs("narrow") || o.runs("rss") {
		t.Errorf("stages %v select the wrong groups", o.Stages)
	}
	for _, id := range []string{"4r", "4b", "4b4", "4c", "4m"} {
		if !o.want(id) {
			t.Errorf("stages %v: apply stage %s not selected", o.Stages, id)
		}
	}
	o = Options{Stages: []string{"4b"}}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if !o.wantApply() || !o.want("4b") || o.want("4c") || o.runs("throughput") || o.runs("apply") {
		t.Errorf("stages %v select the wrong stages", o.Stages)
	}
	if all := (Options{}); !all.runs("rss") || !all.want("4m") || !all.wantApply() {
		t.Error("no selection must run every stage")
	}
	if none := (Options{Stages: []string{"rss"}}); none.wantApply() {
		t.Error("--stages rss selects an apply stage")
	}
	for _, bad := range []Options{{Stages: []string{"4x"}}, {Stages: []string{"2b"}}, {ProfileStage: "latency"}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "stage") {
			t.Errorf("%+v: error %v, want one naming the stage", bad, err)
		}
	}
	if err := (&Options{ProfileStage: "4b"}).Validate(); err != nil {
		t.Errorf("--profile-stage 4b: %v", err)
	}
}
