package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newScanCmd builds `tollgate scan SOURCE`.
func newScanCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "scan SOURCE",
		Short: "Analyse an image without a server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = findingsFor
			return errors.New("scan: not implemented yet")
		},
	}
}
