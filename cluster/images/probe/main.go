// Command probe checks from inside a pod what a test needs to know: `probe read FILE...` prints
// each file's size, mode and owner and exits non-zero if one cannot be read by the running user;
// `probe serve ADDR` answers 200 on every path, for Services and probes; `probe lookup NAME...` resolves
// names through the pod's DNS; `probe api URL` calls the API server as the pod's ServiceAccount, with
// the token and CA the kubelet mounts, and exits non-zero unless it answers 200.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: probe read FILE... | serve ADDR | lookup NAME... | api URL")
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
	case "lookup":
		for _, name := range os.Args[2:] {
			addrs, err := net.LookupHost(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Printf("%s: %v\n", name, addrs)
		}
	case "api":
		if err := callAPI(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
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

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func callAPI(url string) error {
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s/ca.crt", serviceAccountDir)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	fmt.Printf("GET %s: %d %s\n", url, res.StatusCode, body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered %d", url, res.StatusCode)
	}
	return nil
}
