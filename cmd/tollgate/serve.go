package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newServeCmd is a stub; the proxy work replaces it.
func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the registry proxy and the admin API",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("serve: not implemented yet")
		},
	}
}
