# The CUDA backend's build fragment. The top Makefile includes it right after it has set
# LIB_OBJS, CPPFLAGS and LDLIBS (and before any rule names $(LIB_OBJS)):
#
#     -include src/backend/cuda/cuda.mk
#
# When nvcc is found (NVCC=/path/to/nvcc to choose one; CUDA at /usr/local/cuda by default) it
# adds the .c files of src/backend/cuda to the library, compiles the .cu files with nvcc into
# $(BUILD)/obj/src/backend/cuda/<name>.cu.o, and turns on -DMTI_WITH_CUDA. WITH_CUDA=0 builds
# without the backend even where nvcc exists (e.g. sanitizer variants on a GPU-less CI runner).

NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(if $(strip $(NVCC)),$(patsubst %/bin/nvcc,%,$(NVCC)),/usr/local/cuda)
WITH_CUDA ?= $(if $(strip $(NVCC)),1,0)

ifeq ($(WITH_CUDA),1)

# sm_90 machine code (H100/H200) plus compute_80 PTX that the driver JITs for other GPUs.
NVCC_GENCODE ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS    ?= -O3 -g -std=c++17 $(NVCC_GENCODE) -Xcompiler -fPIC \
                -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -Werror all-warnings \
                -Xcompiler -fno-exceptions,-fno-threadsafe-statics

CUDA_C_SRCS  := $(wildcard src/backend/cuda/*.c)
CUDA_CU_SRCS := $(wildcard src/backend/cuda/*.cu)
CUDA_OBJS    := $(CUDA_C_SRCS:%.c=$(BUILD)/obj/%.o) $(CUDA_CU_SRCS:%.cu=$(BUILD)/obj/%.cu.o)

LIB_OBJS += $(CUDA_OBJS)
# -isystem: CUDA's headers are not ours to keep -Wall -Wextra -Werror clean.
CPPFLAGS += -DMTI_WITH_CUDA -isystem $(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -Wl,-rpath,$(CUDA_HOME)/lib64

$(BUILD)/obj/%.cu.o: %.cu src/backend/cuda/cuda.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

endif
