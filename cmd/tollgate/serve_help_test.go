package main

import (
	"strings"
	"testing"
)

func TestServeHelpMentionsAdminAuth(t *testing.T) {
	out, _, err := runCLI(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TOLLGATE_ADMIN_TOKEN", "TOLLGATE_ADMIN_ACCESS_KEY_ID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "admin-token", "SigV4"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help does not mention %s:\n%s", want, out)
		}
	}
}
