package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the generated admin token's file under the data directory.
const TokenFileName = "admin-token"

// EnsureTokenFile returns the admin token stored in <dataDir>/admin-token,
// creating it (32 random bytes, hex; mode 0600) when absent. cmd uses it
// when neither admin.token nor access keys are configured, so the admin API
// is never open; the CLI reads the same file (ReadTokenFile).
func EnsureTokenFile(dataDir string) (token, path string, created bool, err error) {
	path = filepath.Join(dataDir, TokenFileName)
	if tok, err := ReadTokenFile(dataDir); err == nil {
		return tok, path, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", path, false, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	token = hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", path, false, fmt.Errorf("admin token: %w", err)
	}
	return token, path, true, nil
}

// ReadTokenFile reads <dataDir>/admin-token; the error wraps os.ErrNotExist
// when there is none.
func ReadTokenFile(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, TokenFileName))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", filepath.Join(dataDir, TokenFileName))
	}
	return tok, nil
}
