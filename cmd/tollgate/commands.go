package main

import "github.com/spf13/cobra"

// subcommands lists every subcommand constructor. Add new ones here.
func subcommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(g),
		newVersionCmd(g),
		newScanCmd(g),
		newDBCmd(g),
	}
}
