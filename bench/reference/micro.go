// Reference micro-benchmarks in Go, measured beside weft's own in the same run.
//
//	go run micro.go goshared.go [--tasks N] [--switches N] [--sleepers N] [--sleep-ms N] [--only NAME]
//
// NAME is one of spawn_join, switch, sleepers. Go 1.19, stdlib only, no
// go.mod: `go run` of named files outside any module works with the default
// GO111MODULE (on), so no GOFLAGS or GO111MODULE setting is needed.
// goshared.go holds what this program shares with threads.go.
// Stdout gets exactly one JSON object; notes go to stderr.
//
// What each workload means (kept in step with the C++ side):
//
//	spawn_join  start N trivial goroutines, then wait for all (sync.WaitGroup);
//	            wall time / N. GOMAXPROCS is left at its default (all CPUs).
//	switch      two goroutines pass a token over unbuffered channels with
//	            GOMAXPROCS(1); every hand-off is one switch; wall time / N.
//	            Go has no explicit yield-to-peer, so this is the closest analogue.
//	sleepers    N goroutines each sleep until one common deadline. See
//	            runSleepers for how the deadline and the memory are measured.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Structs rather than maps so the JSON keys come out in the documented order.
type switchRes struct {
	Name        string  `json:"name"`
	Switches    int     `json:"switches"`
	NsPerSwitch float64 `json:"ns_per_switch"`
}

type sleepersRes struct {
	Name            string  `json:"name"`
	Sleepers        int     `json:"sleepers"`
	BytesPerSleeper float64 `json:"bytes_per_sleeper"`
	WakeAllS        float64 `json:"wake_all_s"`
	LateMaxS        float64 `json:"late_max_s"`
}

func runSwitch(n int) switchRes {
	// One P, so a hand-off really is a goroutine switch on one thread rather
	// than a wake-up of another OS thread.
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	rounds := n / 2 // one round trip = two switches
	el := handOff(rounds, make(chan struct{}), make(chan struct{}))
	return switchRes{"switch", 2 * rounds, float64(el.Nanoseconds()) / float64(2*rounds)}
}

// runSleepers: every goroutine is first started and parked on a barrier; only
// then is the common deadline fixed (release time + sleep-ms), so spawning
// cost never eats into the sleep. Releasing 1M parked goroutines into
// time.Sleep took 0.2x-0.95x as long as starting them (measured here), so if
// 2x the start-up time exceeds sleep-ms the deadline is pushed out to that
// (reported on stderr); any goroutine that still reaches its sleep after the
// deadline is counted and reported.
//
// Memory: HeapInuse+StackInuse (runtime.ReadMemStats) once all N have entered
// time.Sleep, minus the same before spawning, / N. That covers each
// goroutine's g, stack, closure and timer; bookkeeping allocated up front
// (the wake-time slots) is outside the delta.
func runSleepers(n, sleepMs int) sleepersRes {
	late := make([]int64, n) // ns each goroutine woke after the deadline
	var deadline time.Time   // written before release is closed; read after
	var asleep, missed atomic.Int64
	var allStarted, done sync.WaitGroup
	release := make(chan struct{})
	allStarted.Add(n)
	done.Add(n)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	t0 := time.Now()
	for i := 0; i < n; i++ {
		go func(i int) {
			defer done.Done()
			allStarted.Done()
			<-release
			d := time.Until(deadline)
			if d <= 0 {
				missed.Add(1)
			}
			asleep.Add(1)
			time.Sleep(d)
			late[i] = int64(time.Since(deadline))
		}(i)
	}
	allStarted.Wait()
	startup := time.Since(t0)

	wait := time.Duration(sleepMs) * time.Millisecond
	if 2*startup > wait {
		fmt.Fprintf(os.Stderr, "sleepers: start-up took %v, deadline set %v after release instead of %v\n",
			startup, 2*startup, wait)
		wait = 2 * startup
	}
	deadline = time.Now().Add(wait)
	released := time.Now()
	close(release)

	for asleep.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "sleepers: all asleep %v after release\n", time.Since(released))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if time.Now().After(deadline) {
		fmt.Fprintln(os.Stderr, "sleepers: WARNING memory read after the deadline; some may have woken")
	}
	done.Wait()

	var maxLate int64
	for _, l := range late {
		if l > maxLate {
			maxLate = l
		}
	}
	if m := missed.Load(); m > 0 {
		fmt.Fprintf(os.Stderr, "sleepers: WARNING %d goroutines reached sleep after the deadline\n", m)
	}
	used := float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)
	sys := float64(after.Sys) - float64(before.Sys)
	fmt.Fprintf(os.Stderr, "sleepers: start-up %v, Sys delta %.0f B/sleeper\n", startup, sys/float64(n))
	lateS := float64(maxLate) / 1e9
	return sleepersRes{"sleepers", n, used / float64(n), lateS, lateS}
}

func main() {
	tasks := flag.Int("tasks", 1000000, "spawn_join: goroutines to spawn and join")
	switches := flag.Int("switches", 1000000, "switch: total switches (rounded down to even)")
	sleepers := flag.Int("sleepers", 1000000, "sleepers: goroutines sleeping at once")
	sleepMs := flag.Int("sleep-ms", 1000, "sleepers: sleep from release to deadline, ms")
	only := flag.String("only", "", "run just one of spawn_join, switch, sleepers")
	flag.Parse()
	checkOnly(*only, "spawn_join", "switch", "sleepers")
	if *tasks < 1 || *switches < 2 || *sleepers < 1 || *sleepMs < 0 {
		fmt.Fprintln(os.Stderr, "counts must be positive (switches >= 2)")
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "%s GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))

	results := []any{}
	if *only == "" || *only == "spawn_join" {
		results = append(results, runSpawnJoin(*tasks, false))
	}
	if *only == "" || *only == "switch" {
		results = append(results, runSwitch(*switches))
	}
	if *only == "" || *only == "sleepers" {
		results = append(results, runSleepers(*sleepers, *sleepMs))
	}
	printResults(0, results)
}
