//go:build !race

package scan_test

const raceOn = false
