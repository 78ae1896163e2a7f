package main

import "github.com/orderflow/orderflow/internal/gctune"

func init() { gctune.Apply() }
