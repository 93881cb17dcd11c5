package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Stage selection (--stages) beyond StageNames: the full bench takes minutes on a
// quiet machine and far longer on a busy one, so a change to one handler can be
// measured alone, by the ID of its apply stage.

// StageIDs lists what --stages accepts: StageNames and each apply stage's ID.
func StageIDs() []string {
	ids := slices.Clone(StageNames)
	for _, st := range ApplyStages {
		ids = append(ids, st.ID)
	}
	return ids
}

// Validate checks the stage selection and the profiled stage, so that a typo is
// refused before any server starts rather than silently running nothing.
func (o *Options) Validate() error {
	known := StageIDs()
	for _, s := range o.Stages {
		if !slices.Contains(known, s) {
			return fmt.Errorf("--stages: unknown stage %q (known: %s)", s, strings.Join(known, ", "))
		}
	}
	if o.ProfileStage != "" && applyStage(o.ProfileStage) == nil {
		return fmt.Errorf("--profile-stage: %q is not an apply stage (known: %s; empty profiles the producer)", o.ProfileStage, strings.Join(applyIDs(), ", "))
	}
	return nil
}

// applyIDs lists the apply stages' IDs.
func applyIDs() []string {
	ids := make([]string, len(ApplyStages))
	for i, st := range ApplyStages {
		ids[i] = st.ID
	}
	return ids
}

// want reports whether the apply stage id is selected: by "apply", by its own
// ID, or by no selection at all.
func (o *Options) want(id string) bool {
	return o.runs("apply") || slices.Contains(o.Stages, id)
}

// wantApply reports whether any apply stage is selected.
func (o *Options) wantApply() bool {
	return slices.ContainsFunc(ApplyStages, func(st ApplyStage) bool { return o.want(st.ID) })
}
