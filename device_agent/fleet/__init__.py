"""Many simulated devices in one process: the fleet simulator behind `lessoncast simulate`."""
