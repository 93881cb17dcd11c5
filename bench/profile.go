package bench

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/kanal-cdc/kanal/schemas"
)

// profiled runs one extra, unmeasured pass of a stage under the CPU profiler
// (cpuPath) and/or with every allocation sampled (memPath: the heap profile after
// the pass, and memPath+".base" just before it, for `go tool pprof -base`). pass
// calls start right before the part worth profiling begins.
func profiled(env *Env, cpuPath, memPath string, pass func(start func()) error) error {
	var cpuFile *os.File
	if cpuPath != "" {
		f, err := os.Create(cpuPath)
		if err != nil {
			return err
		}
		defer f.Close()
		cpuFile = f
	}
	started := false
	defer func() {
		if started {
			pprof.StopCPUProfile()
		}
	}()
	if memPath != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 4096
	}
	err := pass(func() {
		if memPath != "" {
			if e := writeHeapProfile(memPath + ".base"); e != nil {
				env.logf("memprofile: %v", e)
			}
		}
		if cpuFile != nil {
			started = pprof.StartCPUProfile(cpuFile) == nil
		}
	})
	if err == nil && memPath != "" {
		err = writeHeapProfile(memPath)
	}
	return err
}

// profileProducer repeats the producer stage (or, when only the narrow stage ran,
// the narrow one) once with profiles (see profiled).
func profileProducer(ctx context.Context, env *Env, cpuPath, memPath string) error {
	run := producerRun{source: "benchprof", serverID: 3999, format: schemas.FormatJSON, table: "bench.orders", want: uint64(env.Workload.RowChanges)}
	if nw := env.Narrow; nw != nil && !env.Opts.runs("throughput") {
		// Only the narrow stage ran: profile its workload.
		run.table, run.want, run.from = "bench.earnings", uint64(nw.RowChanges), nw.from()
	}
	return profiled(env, cpuPath, memPath, func(start func()) error {
		run.beforeRun = start
		res, err := runProducerSpec(ctx, env, run)
		if err == nil {
			env.logf("profiled pass: %.0f rows/s", res.rate())
		}
		return err
	})
}

// profileApply repeats an apply stage once with profiles (see profiled); the
// profile covers the whole pass, its setup (a Runner joining its group, a
// handler's servers) included, but not the stage's Setup.
func profileApply(ctx context.Context, env *Env, st *ApplyStage, cpuPath, memPath string) error {
	if st.Setup != nil {
		if err := st.Setup(ctx, env); err != nil {
			return err
		}
	}
	return profiled(env, cpuPath, memPath, func(start func()) error {
		start()
		rows, dur, err := st.Run(ctx, env)
		if err == nil {
			env.logf("profiled pass of %s: %.0f rows/s", st.ID, float64(rows)/dur.Seconds())
		}
		return err
	})
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC() // the profile shows allocations up to the last GC
	return pprof.Lookup("allocs").WriteTo(f, 0)
}
