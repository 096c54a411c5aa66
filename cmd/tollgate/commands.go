package main

import "github.com/spf13/cobra"

// subcommands lists every subcommand constructor. Add new ones here.
func subcommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(g),
		newVersionCmd(g),
		newScanCmd(g),
		newDBCmd(g),
		newFindingsCmd(g),
		newCoverageCmd(g),
		newConfigCmd(g),
		newScanImageCmd(g),
		newSbomCmd(g),
		newStorageClassCmd(g, true),
		newStorageClassCmd(g, false),
	}
}
