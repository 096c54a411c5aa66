package proxy

import (
	"io"
	"os"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestMain(m *testing.M) {
	// distribution logs through logrus' process-global logger; keep tests quiet.
	logrus.SetOutput(io.Discard)
	os.Exit(m.Run())
}
