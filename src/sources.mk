# The library's source list, written once: the Makefile and fuzz/fuzz.mk include this file. The
# folders come from src/LAYERS (the floors, bottom first); cli/ is the program, not the library.
VM_LIB_DIRS := $(filter-out cli,$(shell sed 's/\#.*//' src/LAYERS))
VM_LIB_SRC  := $(sort $(wildcard $(VM_LIB_DIRS:%=src/%/*.c)))
# The version, from the public header, for the soname and vmoer.pc.
VM_VERSION  := $(shell sed -n 's/^\#define VMOER_VERSION "\(.*\)"/\1/p' include/vmoer.h)
VM_VERSION_MAJOR := $(firstword $(subst ., ,$(VM_VERSION)))
