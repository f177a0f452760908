// A reference for weft's echo server: Go's goroutine-per-connection TCP echo server.
//
//	go build -o echo_go echo.go && ./echo_go PORT   (or: go run echo.go PORT)
//
// Listens on 127.0.0.1:PORT, prints "listening on 127.0.0.1:PORT", and per connection reads
// into a buffer and writes back what it read (Write writes it all) until EOF or an error.
// Exits 0 on SIGINT/SIGTERM.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echo PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil || port <= 0 || port > 65535 {
		fmt.Fprintf(os.Stderr, "echo: bad port '%s'\n", os.Args[1])
		os.Exit(2)
	}
	// Go's listener sets SO_REUSEADDR; accepted connections get TCP_NODELAY by default.
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	fmt.Printf("listening on 127.0.0.1:%d\n", port)
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}
