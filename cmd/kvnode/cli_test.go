package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/nodetest"
)

func TestSubcommands(t *testing.T) {
	_, url := nodetest.Start(t, "cli", 2)
	addr := strings.TrimPrefix(url, "http://")

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI(args[0], append([]string{"--addr", addr}, args[1:]...), &out)
		return out.String(), err
	}
	if out, err := run("put", "k1", "hello"); err != nil || !strings.HasPrefix(out, "version ") {
		t.Fatalf("put: %q %v", out, err)
	}
	if out, err := run("get", "k1"); err != nil || out != "hello" {
		t.Fatalf("get: %q %v", out, err)
	}
	if _, err := run("put", "--if-version", "0", "k1", "again"); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("conditional put: %v", err)
	}
	if _, err := run("put", "k2", "tab\there"); err != nil {
		t.Fatal(err)
	}
	out, err := run("scan", "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "k1\t") || !strings.HasSuffix(lines[1], `"tab\there"`) {
		t.Fatalf("scan over pages of 1: %q", out)
	}
	out, err = run("scan", "--limit", "1", "--reverse")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "k2\t") || !strings.HasPrefix(lines[1], "k1\t") {
		t.Fatalf("reverse scan over pages of 1: %q %v", out, err)
	}
	// A key that is not UTF-8 (or holds a tab) is printed quoted, as values are.
	if _, err := run("put", "bin\xffkey", "v"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("scan", "--prefix", "bin"); err != nil || !strings.HasPrefix(out, `"bin\xffkey"`+"\t") {
		t.Fatalf("scan of a key that is not UTF-8: %q %v", out, err)
	}
	if out, err := run("delete", "k1"); err != nil || out != "deleted\n" {
		t.Fatalf("delete: %q %v", out, err)
	}
	if _, err := run("get", "k1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	out, err = run("status")
	if err != nil || !strings.Contains(out, "node cli") || strings.Count(out, "leader") < 3 {
		t.Fatalf("status: %q %v", out, err)
	}
	if _, err := run("get"); err == nil {
		t.Fatal("get without a key succeeded")
	}
	// One node: it already leads, and there is nobody to hand over to.
	if out, err := run("transfer-leader", "--to", "cli", "1"); err != nil || out != "shard 1: leader cli\n" {
		t.Fatalf("transfer-leader to the leader itself: %q %v", out, err)
	}
	if _, err := run("transfer-leader", "1"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("transfer-leader with no other replica: %v", err)
	}
	if _, err := run("transfer-leader", "--to", "elsewhere", "1"); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("transfer-leader to an unknown node: %v", err)
	}
	if _, err := run("remove-node", "cli"); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("remove-node of the node asked: %v", err)
	}
	if _, err := run("remove-node", "ghost"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("remove-node of an unknown node: %v", err)
	}
	if _, err := run("transfer-leader", "one"); err == nil {
		t.Fatal("transfer-leader of shard \"one\" succeeded")
	}
	// k2 exists, so the comparison fails and else reads it.
	out, err = run("txn", `{"if":[{"key":"k2","exists":false}],"then":[{"put":{"key":"k2","value":"eA=="}}],"else":[{"get":{"key":"k2"}}]}`)
	if err != nil || !strings.Contains(out, `"succeeded": false`) || !strings.Contains(out, `"found": true`) {
		t.Fatalf("txn: %q %v", out, err)
	}
	if _, err := run("txn", `{"then":[{"put":{"key":"k2"}}]}`); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("txn with a put without value: %v", err)
	}
	if _, err := run("txn", `{"than":[]}`); err == nil || !strings.Contains(err.Error(), "not a transaction") {
		t.Fatalf("txn with an unknown field: %v", err)
	}
	if _, err := run("txn", `{"then":[{"put":{"key":"k9","value":"eA=="}}]}]`); err == nil || !strings.Contains(err.Error(), "not a transaction") {
		t.Fatalf("txn with a stray bracket: %v", err)
	}
	// No transaction is in flight: nothing listed, nothing to resolve.
	if out, err := run("txn", "list"); err != nil || !strings.Contains(out, "no transaction holds a lock") {
		t.Fatalf("txn list: %q %v", out, err)
	}
	if _, err := run("txn", "resolve", "nope"); err == nil || !strings.Contains(err.Error(), "holds no lock") {
		t.Fatalf("txn resolve of an unknown transaction: %v", err)
	}
}

func TestDocsSubcommands(t *testing.T) {
	_, url := nodetest.Start(t, "docs", 2)
	addr := strings.TrimPrefix(url, "http://")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCLI("docs", append([]string{"--addr", addr}, args...), &out)
		return out.String(), err
	}
	for _, d := range []string{`{"_id":"ann","age":31}`, `{"_id":"bob","age":45}`, `{"_id":"cy","age":27}`} {
		if out, err := run("insert", "users", d); err != nil || !strings.Contains(out, `"_version"`) {
			t.Fatalf("insert %s: %q %v", d, out, err)
		}
	}
	if _, err := run("insert", "users", `{"_id":"ann"}`); !errors.Is(err, client.ErrExists) {
		t.Fatalf("insert of a taken _id: %v", err)
	}
	for _, d := range []string{`{"_id":"dee"}]`, `{"_id":"dee"} {}`} {
		if _, err := run("insert", "users", d); err == nil || !strings.Contains(err.Error(), "not one JSON value") {
			t.Fatalf("insert %s: %v, want it refused", d, err)
		}
	}
	if _, err := run("get", "users", "dee"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a refused insert wrote: %v", err)
	}
	if out, err := run("patch", "users", "ann", `{"city":"Oslo"}`); err != nil || !strings.Contains(out, `"_id": "ann"`) {
		t.Fatalf("patch: %q %v", out, err)
	}
	if out, err := run("get", "users", "ann"); err != nil || !strings.Contains(out, `"city": "Oslo"`) || !strings.Contains(out, `"age": 31`) {
		t.Fatalf("get: %q %v", out, err)
	}
	if _, err := run("put", "--if-version", "1", "users", "ann", `{"age":1}`); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("put at a wrong version: %v", err)
	}
	out, err := run("find", "--sort", "-age", "--fields", "age", "--limit", "1", "users", `{"age":{"$lt":40}}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || !strings.Contains(lines[0], `"_id":"ann"`) || !strings.Contains(lines[1], `"_id":"cy"`) || strings.Contains(out, "city") {
		t.Fatalf("find over pages of 1: %q %v", out, err)
	}
	if out, err := run("index", "users", "by_age", "age"); err != nil || !strings.Contains(out, `"state": "ready"`) {
		t.Fatalf("index: %q %v", out, err)
	}
	if out, err := run("indexes", "users"); err != nil || !strings.Contains(out, `"by_age"`) {
		t.Fatalf("indexes: %q %v", out, err)
	}
	if out, err := run("find", "--hint", "by_age", "users", `{"age":45}`); err != nil || !strings.Contains(out, `"_id":"bob"`) || strings.Count(out, "\n") != 1 {
		t.Fatalf("find by index: %q %v", out, err)
	}
	if out, err := run("analyze", "users"); err != nil || !strings.Contains(out, `"docs": 3`) {
		t.Fatalf("analyze: %q %v", out, err)
	}
	if out, err := run("explain", "users", `{"age":45}`); err != nil || !strings.Contains(out, `"index": "by_age"`) {
		t.Fatalf("explain: %q %v", out, err)
	}
	if _, err := run("drop-index", "users", "by_age"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("index", "--unique", "users", "by_age_unique", "age"); err != nil || !strings.Contains(out, `"state": "ready"`) {
		t.Fatalf("unique index: %q %v", out, err)
	}
	if _, err := run("insert", "users", `{"_id":"dup","age":45}`); !errors.Is(err, client.ErrUniqueViolation) {
		t.Fatalf("insert of a taken age: %v", err)
	}
	if _, err := run("drop-index", "users", "by_age_unique"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("delete", "users", "bob"); err != nil || !strings.Contains(out, `"deleted": true`) {
		t.Fatalf("delete: %q %v", out, err)
	}
	if out, err := run("list"); err != nil || out != "users\n" {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := run("drop", "users"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("list"); err != nil || out != "" {
		t.Fatalf("list after drop: %q %v", out, err)
	}
	if _, err := run("get", "users"); err == nil || !strings.Contains(err.Error(), "bad arguments") {
		t.Fatalf("missing argument: %v", err)
	}
}
