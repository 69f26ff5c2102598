// Command verdant-kstatus reads Kubernetes objects as JSON, one a line, on standard input and
// prints for each what kstatus (sigs.k8s.io/cli-utils, the library Flux and kpt decide health
// with) computes, as one JSON line: {"status": "Current", "message": "..."}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 0, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		// UnmarshalJSON keeps integers int64, as kstatus reads generations.
		var object unstructured.Unstructured
		if err := object.UnmarshalJSON(scanner.Bytes()); err != nil {
			fmt.Fprintf(os.Stderr, "verdant-kstatus: not a Kubernetes object: %v\n", err)
			os.Exit(2)
		}
		result, err := status.Compute(&object)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verdant-kstatus: %v\n", err)
			os.Exit(1)
		}
		if err := out.Encode(map[string]string{"status": result.Status.String(), "message": result.Message}); err != nil {
			os.Exit(1)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "verdant-kstatus: %v\n", err)
		os.Exit(1)
	}
}
