"""The demo county: everything `lessoncast demo` builds, through the services staff use."""
