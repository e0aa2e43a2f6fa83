// `smallthinker convert`: writes the expert pack beside a GGUF, optionally
// reading it back through an expert source (checksums + throughput).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "common/units.h"
#include "storage/expert_pack.h"
#include "storage/pack_verify.h"
#include "storage/pack_writer.h"
#include "tools/commands.h"

namespace st::tools {
namespace {

struct ConvertFlags {
  std::string model;
  std::string out;
  bool quiet = false;
  int threads = 0;
  bool verify = false;
  bool verify_only = false;
  bool kquant_as_q8 = false;
  std::string source = "auto";
  int queue_depth = 64;
  int in_flight = 32;
};

// Whether `path` is missing, empty, or a file that begins with the pack's
// magic (a pack of any version or model, or one whose write was cut short
// after its header).
bool LooksLikePackOrNothing(const std::string& path) {
  // Not a regular file (missing, a FIFO, a device): WritePack's own checks
  // say what is wrong; opening a FIFO here would block.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return true;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return true;  // missing (other errors: the write says)
  char magic[sizeof(kPackMagic)] = {};
  const size_t got = std::fread(magic, 1, sizeof(magic), file);
  std::fclose(file);
  return got == 0 || (got == sizeof(magic) && std::memcmp(magic, kPackMagic, 6) == 0);
}

int RunConvert(const ConvertFlags& f) {
  const std::string pack_path = f.out.empty() ? DefaultPackPath(f.model) : f.out;
  std::error_code ec;
  if (std::filesystem::is_directory(pack_path, ec)) {
    std::fprintf(stderr, "error: --out %s is a directory; give the pack's file name (e.g. %s)\n",
                 pack_path.c_str(),
                 (std::filesystem::path(pack_path) /
                  std::filesystem::path(DefaultPackPath(f.model)).filename())
                     .c_str());
    return 1;
  }
  if (std::filesystem::equivalent(f.model, pack_path, ec)) {
    std::fprintf(stderr, "error: the pack %s would replace the model itself; choose another --out\n",
                 pack_path.c_str());
    return 1;
  }
  // An existing file there that is not an expert pack (another model's
  // GGUF given as --out by mistake, say) is not replaced: an older pack is.
  if (!f.verify_only && !LooksLikePackOrNothing(pack_path)) {
    std::fprintf(stderr,
                 "error: %s exists and is not an expert pack; not replacing it (remove it first, "
                 "or choose another --out)\n",
                 pack_path.c_str());
    return 1;
  }
  if (!f.verify_only) {
    auto r = WritePack({.gguf_path = f.model,
                        .out_path = pack_path,
                        .progress = !f.quiet,
                        .threads = f.threads,
                        .kquant_as_q8 = f.kquant_as_q8});
    if (!r.ok()) {
      std::fprintf(stderr, "error: %s\n", r.status().ToString().c_str());
      return 1;
    }
    std::printf("wrote %s: %llu expert records, %s%s\n", r->path.c_str(),
                static_cast<unsigned long long>(r->records), FormatBytes(r->bytes).c_str(),
                r->as_stored ? " (K-quant experts as the model stores them)"
                : r->down_requantized ? " (down transposed and re-quantized)"
                                      : "");
  }
  if (!f.verify && !f.verify_only) return 0;
  auto kind = ParseSourceKind(f.source);
  auto gguf = kind.ok() ? GgufFile::Open(f.model) : kind.status();
  auto pack = gguf.ok() ? ExpertPack::OpenFor(pack_path, **gguf) : gguf.status();
  auto v = pack.ok() ? VerifyPack(*pack, {.kind = *kind, .queue_depth = f.queue_depth}, f.in_flight)
                     : pack.status();
  if (!v.ok()) {
    std::fprintf(stderr, "error: %s\n", v.status().ToString().c_str());
    return 1;
  }
  std::printf("verified %llu records (%s) through %s: %.2f s, %.2f GB/s (%d reads in flight)\n",
              static_cast<unsigned long long>(v->records), FormatBytes(v->bytes).c_str(),
              v->source.c_str(), v->seconds, v->gb_per_s(), f.in_flight);
  return 0;
}

}  // namespace

void RegisterConvert(CLI::App& app) {
  auto f = std::make_shared<ConvertFlags>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Write the expert pack (MODEL.gguf.stpack): every expert's gate, up and transposed down,\n"
      "4 KiB-aligned with a checksum per record, for direct reads from SSD. A K-quant file's\n"
      "Q4_K/Q6_K experts are kept as the file stores them (down not transposed), so they\n"
      "compute exactly as in RAM.");
  cmd->add_option("model", f->model, "GGUF model file")->required();
  cmd->add_option("-o,--out", f->out, "Pack path (default: MODEL.gguf.stpack)");
  cmd->add_flag("-q,--quiet", f->quiet, "No progress bar");
  cmd->add_option("-t,--threads", f->threads, "Threads building records (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_flag("--verify", f->verify,
                "Then read every record back through --source (checksums, GB/s)");
  cmd->add_flag("--verify-only", f->verify_only, "Only verify an existing pack");
  cmd->add_flag("--kquant-as-q8", f->kquant_as_q8,
                "Write K-quant experts as Q8_0 records with a transposed down (sparse ReGLU\n"
                "down; 1.76x the bytes of a Q4_K_M's), for runs with --kquant-as-q8");
  cmd->add_option("--source", f->source, "auto, io_uring, pread, mmap or memory")
      ->check(CLI::IsMember({"auto", "io_uring", "pread", "mmap", "memory"}))
      ->capture_default_str();
  cmd->add_option("--queue-depth", f->queue_depth, "io_uring queue depth")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  // Each read in flight holds a record buffer (~3.3 MB on the 21B).
  cmd->add_option("--in-flight", f->in_flight, "Reads kept outstanding while verifying")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->callback([f, cmd] {
    // Flags that do nothing in this mode: said, not silently ignored.
    auto unused = [&](std::initializer_list<const char*> names, const char* why) {
      for (const char* name : names) {
        if (cmd->count(name) > 0) std::fprintf(stderr, "warning: %s ignored: %s\n", name, why);
      }
    };
    if (!f->verify && !f->verify_only) {
      unused({"--source", "--queue-depth", "--in-flight"}, "no --verify or --verify-only");
    }
    if (f->verify_only) {
      unused({"--threads", "--quiet", "--kquant-as-q8"}, "--verify-only writes nothing");
    }
    ExitCode() = RunConvert(*f);
  });
}

}  // namespace st::tools
