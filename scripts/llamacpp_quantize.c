/* scripts/llamacpp_quantize.c: llama.cpp's own quantizer (llama_model_quantize,
 * as `llama-quantize IN OUT FTYPE` runs it) through node-llama-cpp's
 * libllama, for scripts/check-llamacpp-parity: files as users download
 * them (a Q4_0 file gets a Q6_K LM head). Built by that script against the
 * llama.h of the llama.cpp release node-llama-cpp bundles.
 * Usage: llamacpp_quantize IN.gguf OUT.gguf FTYPE (llama_ftype number, 2 = Q4_0). */
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s IN.gguf OUT.gguf FTYPE\n", argv[0]);
    return 2;
  }
  llama_backend_init();
  llama_model_quantize_params p = llama_model_quantize_default_params();
  p.nthread = 2;
  p.ftype = (enum llama_ftype)atoi(argv[3]);
  const uint32_t r = llama_model_quantize(argv[1], argv[2], &p);
  if (r != 0) fprintf(stderr, "llama_model_quantize failed: %u\n", r);
  return r != 0;
}
