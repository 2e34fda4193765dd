#if CUFACE_HAS_CUDA
#include "engine/cublas_library.h"

#include <dlfcn.h>

#include <string>

#include "engine/error.h"

namespace cuface {
namespace {

#if CUFACE_CUDA_EMULATED

CublasLibrary load_cublas() {
  return {&cublasCreate, &cublasDestroy, &cublasSetStream, static_cast<CublasLibrary::GemmEx>(&cublasGemmEx)};
}

#else

// cublas_v2.h maps the API names onto versioned symbols (cublasCreate -> cublasCreate_v2): the
// symbol's name is the macro's expansion, hence two levels.
#define CUFACE_SYMBOL_NAME(name) CUFACE_SYMBOL_NAME_EXPANDED(name)
#define CUFACE_SYMBOL_NAME_EXPANDED(name) #name

template <typename Function>
void resolve(void* library, const std::string& library_name, const char* symbol, Function& out) {
  out = reinterpret_cast<Function>(dlsym(library, symbol));
  CUFACE_CHECK(out != nullptr, library_name + " has no symbol " + symbol);
}

CublasLibrary load_cublas() {
  // The soname of the major version the headers describe; the toolkit's own folder (known at build
  // time) when the loader's search path does not have it.
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const std::string in_toolkit = std::string(CUFACE_CUDA_LIBRARY_DIR) + "/" + soname;
    library = dlopen(in_toolkit.c_str(), RTLD_NOW | RTLD_LOCAL);
  }
  CUFACE_CHECK(library != nullptr, "cannot load " + soname + " (cuBLAS): " + dlerror());
  CublasLibrary api;
  resolve(library, soname, CUFACE_SYMBOL_NAME(cublasCreate), api.create);
  resolve(library, soname, CUFACE_SYMBOL_NAME(cublasDestroy), api.destroy);
  resolve(library, soname, CUFACE_SYMBOL_NAME(cublasSetStream), api.set_stream);
  resolve(library, soname, CUFACE_SYMBOL_NAME(cublasGemmEx), api.gemm_ex);
  return api;  // the library stays loaded until the process ends
}

#endif

}  // namespace

const CublasLibrary& cublas_library() {
  static const CublasLibrary api = load_cublas();
  return api;
}

}  // namespace cuface

#endif  // CUFACE_HAS_CUDA
