package index

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const killChildEnv = "TOLLGATE_RECORDS_KILL_CHILD"

// TestRecordsSurviveKill9: a child process records pushes and reports each
// one only after Record returned (as the proxy answers the client only
// then); the parent SIGKILLs it and every reported record must be there.
func TestRecordsSurviveKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		recordUntilKilled(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordsSurviveKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked = append(acked, d)
			if len(acked) == 50 {
				break
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 50 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}
	db := openRecordsDB(t, dir)
	defer db.Close()
	r := NewRecords(db, RecordsOptions{})
	for _, d := range acked {
		rec, err := r.Get(context.Background(), recDg(d))
		if err != nil || rec.Repo("killed") == nil {
			t.Fatalf("acknowledged record %s lost after kill -9: %v", d, err)
		}
	}
}

// recordUntilKilled runs in the child: record forever, acknowledging each.
func recordUntilKilled(dir string) {
	db, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	r := NewRecords(db, RecordsOptions{})
	for i := 0; ; i++ {
		d := fmt.Sprint("img", i)
		if err := r.Record(context.Background(), Event{Kind: EventPush, Repository: "killed", Digest: recDg(d), Tag: "t"}); err != nil {
			fmt.Println("record:", err)
			os.Exit(1)
		}
		fmt.Println("acked", d)
	}
}
