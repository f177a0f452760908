// What the Go references micro.go and threads.go share. Each is built together with this file:
//
//	go run micro.go goshared.go
//	go build -o threads_go threads.go goshared.go
//
// Go 1.19, stdlib only, no go.mod.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

// Structs rather than maps so the JSON keys come out in the documented order.
type spawnJoin struct {
	Name      string  `json:"name"`
	Tasks     int     `json:"tasks"`
	NsPerTask float64 `json:"ns_per_task"`
}

// runSpawnJoin starts n trivial goroutines, then waits for all (sync.WaitGroup); wall time / n.
// With settle, the clock starts after a 1 ms sleep that lets the runtime's threads start.
func runSpawnJoin(n int, settle bool) spawnJoin {
	runtime.GC() // don't charge earlier garbage to this run
	if settle {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	el := time.Since(start)
	return spawnJoin{"spawn_join", n, float64(el.Nanoseconds()) / float64(n)}
}

// handOff has two goroutines pass a token back and forth n times, over ping one way and pong
// the other, and returns the wall time of the whole exchange.
func handOff[T any](n int, ping, pong chan T) time.Duration {
	var token T
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			ping <- token
			<-pong
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			pong <- <-ping
		}
	}()
	wg.Wait()
	return time.Since(start)
}

// checkOnly exits with status 2 unless only (the --only flag) is empty or one of names.
func checkOnly(only string, names ...string) {
	if only == "" {
		return
	}
	for _, name := range names {
		if only == name {
			return
		}
	}
	fmt.Fprintf(os.Stderr, "--only: unknown benchmark %q\n", only)
	os.Exit(2)
}

// printResults prints the one JSON object on stdout: the Go version, the number of workers
// (GOMAXPROCS; left out when 0) and the results.
func printResults(workers int, results []any) {
	out, _ := json.Marshal(struct {
		Runtime string `json:"runtime"`
		Workers int    `json:"workers,omitempty"`
		Results []any  `json:"results"`
	}{runtime.Version(), workers, results})
	fmt.Println(string(out))
}
