"""The sandbox: sandboxed processes (bubblewrap, cgroups), warm forked test runs, scratch trees and workspaces."""
