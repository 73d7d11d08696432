// Command probe checks from inside a pod what a test needs to know: `probe read FILE...` prints
// each file's size, mode and owner and exits non-zero if one cannot be read by the running user;
// `probe serve ADDR` answers 200 on every path, for Services, probes and DNS checks.
package main

import (
	"fmt"
	"net/http"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe read FILE... | probe serve ADDR")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "read":
		failed := false
		for _, path := range os.Args[2:] {
			if err := read(path); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
				failed = true
			}
		}
		if failed {
			os.Exit(1)
		}
	case "serve":
		err := http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func read(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	owner := ""
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		owner = fmt.Sprintf(" uid=%d gid=%d", st.Uid, st.Gid)
	}
	fmt.Printf("%s: %d bytes, mode %v%s, read as uid=%d\n", path, len(data), info.Mode(), owner, os.Getuid())
	return nil
}
