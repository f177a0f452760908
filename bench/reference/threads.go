// Reference for bench/threads_micro.cpp in Go, measured beside weft's multi-thread executor in
// the same run (bench/threads.py, ./run bench threads).
//
//	go run threads.go goshared.go [--procs 2] [--tasks N] [--round-trips N] [--capacity 1] [--only NAME]
//
// NAME is spawn_join or ping_pong. Go 1.19, stdlib only, no go.mod (goshared.go: see there). GOMAXPROCS is set to
// --procs (2: the same two threads as weft's two workers). Stdout gets exactly one JSON
// object, {"runtime": ..., "workers": P, "results": [...]}; notes go to stderr.
//
//	spawn_join  start N trivial goroutines, then wait for all (sync.WaitGroup); wall time / N.
//	ping_pong   two goroutines pass a token back and forth over two channels of --capacity
//	            (1 matches weft's bounded(1); 0 is Go's unbuffered channel), N round trips;
//	            wall time / N. The scheduler decides whether they share a P (runnext), as
//	            weft's LIFO slot does.
//
// As in weft's version, the clock starts after a 1 ms sleep that lets the runtime's threads
// start.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

type pingPong struct {
	Name           string  `json:"name"`
	RoundTrips     int     `json:"round_trips"`
	Capacity       int     `json:"capacity"`
	NsPerRoundTrip float64 `json:"ns_per_round_trip"`
}

func runPingPong(n, capacity int) pingPong {
	runtime.GC()
	time.Sleep(time.Millisecond)
	el := handOff(n, make(chan int, capacity), make(chan int, capacity))
	return pingPong{"ping_pong", n, capacity, float64(el.Nanoseconds()) / float64(n)}
}

func main() {
	procs := flag.Int("procs", 2, "GOMAXPROCS")
	tasks := flag.Int("tasks", 1000000, "spawn_join: goroutines to spawn and join")
	roundTrips := flag.Int("round-trips", 200000, "ping_pong: round trips")
	capacity := flag.Int("capacity", 1, "ping_pong: channel buffer (0: unbuffered)")
	only := flag.String("only", "", "run just one of spawn_join, ping_pong")
	flag.Parse()
	checkOnly(*only, "spawn_join", "ping_pong")
	if *procs < 1 || *tasks < 1 || *roundTrips < 1 || *capacity < 0 {
		fmt.Fprintln(os.Stderr, "counts must be positive (capacity >= 0)")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)
	fmt.Fprintf(os.Stderr, "%s GOMAXPROCS=%d\n", runtime.Version(), runtime.GOMAXPROCS(0))

	results := []any{}
	if *only == "" || *only == "spawn_join" {
		results = append(results, runSpawnJoin(*tasks, true))
	}
	if *only == "" || *only == "ping_pong" {
		results = append(results, runPingPong(*roundTrips, *capacity))
	}
	printResults(*procs, results)
}
