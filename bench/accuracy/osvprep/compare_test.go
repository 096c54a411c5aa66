package main

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func TestCompareNormalisesAndCounts(t *testing.T) {
	dir := t.TempDir()
	tg := filepath.Join(dir, "tg.json")
	osv := filepath.Join(dir, "osv.json")
	require.NoError(t, os.WriteFile(tg, []byte(`{"images":[{
		"packages":[{"name":"github.com/gin-gonic/gin","version":"1.6.3","ecosystem":"Go"},
			{"name":"stdlib","version":"1.21.0","ecosystem":"Go"},
			{"name":"Jinja2","version":"3.1.2","ecosystem":"PyPI"},
			{"name":"bsdutils","version":"1:2.38.1-5+deb12u3","ecosystem":"Debian:12"}],
		"findings":[{"advisoryId":"GO-2021-0052","relatedIds":["GHSA-h395-qcrw-5vmq","GO-2022-9999"],
			"package":{"name":"github.com/gin-gonic/gin","version":"1.6.3","ecosystem":"Go"}},
			{"advisoryId":"PROBE-EPOCH","package":{"name":"bsdutils","version":"1:2.38.1-5+deb12u3","ecosystem":"Debian:12"}}]}]}`), 0o644))
	require.NoError(t, os.WriteFile(osv, []byte(`{"results":[{"packages":[
		{"package":{"name":"github.com/gin-gonic/gin","version":"v1.6.3","ecosystem":"Go"},
			"vulnerabilities":[{"id":"GO-2021-0052"},{"id":"GO-2022-9999"}]},
		{"package":{"name":"stdlib","version":"go1.21.0","ecosystem":"Go"}},
		{"package":{"name":"example.com/app","version":"(devel)","ecosystem":"Go"}},
		{"package":{"name":"jinja2","version":"3.1.2","ecosystem":"PyPI"},"vulnerabilities":[{"id":"PYSEC-1"}]},
		{"package":{"name":"util-linux","os_package_name":"bsdutils","version":"1:2.38.1-5+deb12u3","ecosystem":"Debian:12"}}]}]}`), 0o644))
	var out bytes.Buffer
	require.NoError(t, compare(context.Background(), &out, tg, osv))
	got := out.String()
	require.Contains(t, got, "packages: tollgate 4, osv-scanner 5, both 4, tollgate only 0, osv-scanner only 1")
	require.Contains(t, got, "(package, advisory) pairs: tollgate 3, osv-scanner 3, both 2, tollgate only 1, osv-scanner only 1")
	require.Regexp(t, `tollgate-only +Debian +bsdutils .*PROBE-EPOCH`, got)
	require.Regexp(t, `osv-scanner-only +PyPI +jinja2 .*PYSEC-1`, got)
	require.Regexp(t, `osv-scanner-only +Go +example.com/app +\(devel\)`, got)
	require.NotContains(t, got, "GHSA-", "aliases are not record ids")
}

func TestWriteDBOneZipPerEcosystem(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.MkdirAll(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "PYSEC-1.yaml"), []byte(
		"id: PYSEC-1\nmodified: 2024-01-01T00:00:00Z\naffected:\n- package: {ecosystem: PyPI, name: jinja2}\n  versions: ['3.1.2']\n"), 0o644))
	out := filepath.Join(dir, "db")
	require.NoError(t, writeDB(context.Background(), zerolog.Nop(), out, []string{src, "+Debian"}))
	zr, err := zip.OpenReader(filepath.Join(out, "osv-scalibr", "PyPI", "all.zip"))
	require.NoError(t, err)
	defer zr.Close()
	require.Len(t, zr.File, 1)
	require.Equal(t, "PYSEC-1.json", zr.File[0].Name)
	f, err := zr.File[0].Open()
	require.NoError(t, err)
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	require.NoError(t, err)
	f.Close()
	require.JSONEq(t, `{"id":"PYSEC-1","modified":"2024-01-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"PyPI","name":"jinja2"},"versions":["3.1.2"]}]}`, b.String())
	empty, err := zip.OpenReader(filepath.Join(out, "osv-scalibr", "Debian", "all.zip"))
	require.NoError(t, err, "an empty zip for an ecosystem named with +")
	require.Empty(t, empty.File)
	empty.Close()
}
