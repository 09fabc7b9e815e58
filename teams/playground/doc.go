// Package playground holds the end-to-end check of the teams package against
// Microsoft's own offline client, the Microsoft 365 Agents Playground (npm
// @microsoft/m365agentsplayground). The test runs only when HANDOFF_PLAYGROUND=1;
// see run.sh. The Playground is installed from npm into a temporary directory
// at run time and never vendored: its licence does not allow redistribution.
package playground
