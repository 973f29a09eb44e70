"""Writing TTrees with STL-vector branches nested up to three levels, through ROOT's own Python package.

Why ROOT: uproot writes TTree branches of scalars and of one variable-length level only, but MLTree files hold
``vector<vector<unsigned long>>``, ``vector<vector<float>>`` and ``vector<vector<vector<int/float>>>`` branches.
ROOT's pip wheel (``pip install 'pcloud[root]'``, i.e. ``ROOT==0.1a12``, ROOT 6.40, about 250 MB) writes them.

Two pieces:

* **Dictionaries.** ROOT ships I/O dictionaries for ``vector<vector<float>>`` but not for
  ``vector<vector<unsigned long>>`` or the triply nested vectors. :func:`ensure_dictionaries` generates them once
  with ``TInterpreter::GenerateDictionary`` (ACLiC compiles them with the system C++ compiler: about 13 s the first
  time) into a per-user cache, ``$PCLOUD_CACHE/root-dicts/<ROOT version>-<environment hash>`` (default
  ``$XDG_CACHE_HOME/pcloud`` or ``~/.cache/pcloud``); later processes load the compiled library (about 1 s).
  A file lock (``fcntl.flock``) serialises concurrent builds; ACLiC writes into the working directory, so it is
  switched to the cache folder and restored afterwards.
* **Filling.** A small C++ class (declared once per process with ``gInterpreter.Declare``) reads flat numpy buffers
  and CSR offset arrays (events -> clusters -> cells -> truth entries) and fills the tree entry by entry, so no
  Python loop runs per event or per cell.

A :class:`Column` is a branch: its C++ element type, the flat values and the offset arrays of its nesting levels
(``offsets[0]`` has n_entries + 1 values, each further level one more than the number of items of the level above).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: pip requirement of the optional extra (pyproject ``[project.optional-dependencies] root``)
ROOT_EXTRA = "pip install 'pcloud[root]'  (ROOT==0.1a12, ROOT 6.40 pre-release wheel)"
#: nested-vector classes without a dictionary in ROOT's wheel
DICTIONARY_CLASSES = ("vector<vector<unsigned long> >", "vector<vector<vector<int> > >",
                      "vector<vector<vector<float> > >")
#: ZLIB level 4 (ROOT setting 100 * algorithm + level): readable by every uproot/ROOT version without extra codecs
COMPRESSION = 104

#: C++ element type -> (numpy dtype, ROOT leaf-list letter of a scalar)
ELEMENT_TYPES = {"int": (np.int32, "I"), "long": (np.int64, "L"), "uint": (np.uint32, "i"),
                 "float": (np.float32, "F"), "ulong": (np.uint64, None), "ushort": (np.uint16, None)}

_CPP = r"""
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "TFile.h"
#include "TTree.h"

namespace pcloud_mltree {
struct Column { virtual ~Column() {} virtual void load(long i) = 0; };

template <class T, class S> struct Scalar : Column {
  const S* src; T value{};
  explicit Scalar(const S* s) : src(s) {}
  void load(long i) override { value = static_cast<T>(src[i]); }
};
template <class T> struct Vec1 : Column {
  const T* src; const long* o1; std::vector<T> value;
  Vec1(const T* s, const long* a) : src(s), o1(a) {}
  void load(long i) override { value.assign(src + o1[i], src + o1[i + 1]); }
};
template <class T> struct Vec2 : Column {
  const T* src; const long *o1, *o2; std::vector<std::vector<T>> value;
  Vec2(const T* s, const long* a, const long* b) : src(s), o1(a), o2(b) {}
  void load(long i) override {
    value.resize(o1[i + 1] - o1[i]);
    for (long k = o1[i]; k < o1[i + 1]; ++k) value[k - o1[i]].assign(src + o2[k], src + o2[k + 1]);
  }
};
template <class T> struct Vec3 : Column {
  const T* src; const long *o1, *o2, *o3; std::vector<std::vector<std::vector<T>>> value;
  Vec3(const T* s, const long* a, const long* b, const long* c) : src(s), o1(a), o2(b), o3(c) {}
  void load(long i) override {
    value.resize(o1[i + 1] - o1[i]);
    for (long k = o1[i]; k < o1[i + 1]; ++k) {
      auto& v = value[k - o1[i]];
      v.resize(o2[k + 1] - o2[k]);
      for (long j = o2[k]; j < o2[k + 1]; ++j) v[j - o2[k]].assign(src + o3[j], src + o3[j + 1]);
    }
  }
};

class TreeWriter {
 public:
  TreeWriter(TFile* file, const char* name, const char* title) {
    file->cd();
    tree_ = new TTree(name, title);  // owned by the file
  }
  // the tree belongs to the file: detach() before the file closes, never touch the tree afterwards
  void detach() { if (tree_) tree_->ResetBranchAddresses(); tree_ = nullptr; }
  void scalar_i(const char* n, const int* s) { leaf(n, new Scalar<int, int>(s), "I"); }
  void scalar_l(const char* n, const long* s) { leaf(n, new Scalar<Long64_t, long>(s), "L"); }
  void scalar_ui(const char* n, const unsigned int* s) { leaf(n, new Scalar<unsigned int, unsigned int>(s), "i"); }
  void scalar_f(const char* n, const float* s) { leaf(n, new Scalar<float, float>(s), "F"); }
  void vec1_i(const char* n, const int* s, const long* a) { vec(n, new Vec1<int>(s, a)); }
  void vec1_f(const char* n, const float* s, const long* a) { vec(n, new Vec1<float>(s, a)); }
  void vec1_ul(const char* n, const unsigned long* s, const long* a) { vec(n, new Vec1<unsigned long>(s, a)); }
  void vec1_us(const char* n, const unsigned short* s, const long* a) { vec(n, new Vec1<unsigned short>(s, a)); }
  void vec2_f(const char* n, const float* s, const long* a, const long* b) { vec(n, new Vec2<float>(s, a, b)); }
  void vec2_ul(const char* n, const unsigned long* s, const long* a, const long* b) {
    vec(n, new Vec2<unsigned long>(s, a, b));
  }
  void vec3_i(const char* n, const int* s, const long* a, const long* b, const long* c) {
    vec(n, new Vec3<int>(s, a, b, c));
  }
  void vec3_f(const char* n, const float* s, const long* a, const long* b, const long* c) {
    vec(n, new Vec3<float>(s, a, b, c));
  }
  void fill(long n_entries) {
    for (long i = 0; i < n_entries; ++i) {
      for (auto& c : cols_) c->load(i);
      if (tree_->Fill() < 0) throw std::runtime_error("TTree::Fill failed for entry " + std::to_string(i));
    }
  }
  void write() {
    if (tree_->Write() <= 0) throw std::runtime_error(std::string("TTree::Write failed for ") + tree_->GetName());
    detach();
  }

 private:
  template <class C> void leaf(const char* n, C* c, const char* code) {
    cols_.emplace_back(c);
    if (!tree_->Branch(n, &c->value, (std::string(n) + "/" + code).c_str()))
      throw std::runtime_error(std::string("cannot create branch ") + n);
  }
  template <class C> void vec(const char* n, C* c) {
    cols_.emplace_back(c);
    if (!tree_->Branch(n, &c->value))
      throw std::runtime_error(std::string("cannot create branch ") + n + " (no ROOT dictionary for its type)");
  }
  TTree* tree_;
  std::vector<std::unique_ptr<Column>> cols_;
};
}  // namespace pcloud_mltree
"""

_STATE: dict = {"declared": False, "dicts": False}


@dataclass
class Column:
    """One branch: ``kind`` is a key of :data:`ELEMENT_TYPES`; ``offsets`` has one array per nesting level."""

    name: str
    kind: str
    values: np.ndarray
    offsets: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in ELEMENT_TYPES:
            raise ValueError(f"Column {self.name!r}: kind must be one of {sorted(ELEMENT_TYPES)}, found {self.kind!r}")
        self.values = np.ascontiguousarray(self.values, dtype=ELEMENT_TYPES[self.kind][0])
        self.offsets = tuple(np.ascontiguousarray(o, dtype=np.int64) for o in self.offsets)
        for lo, hi in zip(self.offsets, self.offsets[1:] + (None,)):
            n_items = int(lo[-1]) if lo.size else 0
            if np.any(np.diff(lo) < 0) or (hi is not None and hi.size != n_items + 1) or \
                    (hi is None and n_items != self.values.size):
                raise ValueError(f"Column {self.name!r}: inconsistent offsets")

    @property
    def depth(self) -> int:
        return len(self.offsets)


def import_root():
    """``import ROOT`` with a clear error naming the optional extra (and without the pre-release banner)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import ROOT
    except ImportError as err:
        raise ImportError(f"writing MLTree TTrees needs ROOT's Python package: {ROOT_EXTRA}; or write the RNTuple "
                          f"container (container='rntuple', uproot only). ({err})") from None
    ROOT.gROOT.SetBatch(True)
    return ROOT


def dictionary_dir(root_version: str) -> Path:
    """Per-user cache folder of the compiled dictionaries (see the module docstring)."""
    base = os.environ.get("PCLOUD_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "pcloud")
    # one folder per ROOT installation: a dictionary compiled against another environment's ROOT libraries
    # loads those libraries (and their NumPy) into this process (measured: a segmentation fault)
    import hashlib
    import sys

    where = hashlib.sha256(f"{sys.prefix}|{sys.version}".encode()).hexdigest()[:12]
    return Path(base) / "root-dicts" / f"{root_version.replace('/', '_')}-{where}"


@contextlib.contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            import fcntl
            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): builds are not serialised
            pass
        yield


def ensure_dictionaries(ROOT) -> None:
    """Load (building on first use) the I/O dictionaries of :data:`DICTIONARY_CLASSES`; once per process."""
    if _STATE["dicts"]:
        return
    folder = dictionary_dir(ROOT.gROOT.GetVersion())
    cwd, old_build = os.getcwd(), ROOT.gSystem.GetBuildDir()
    with _locked(folder):
        try:
            os.chdir(folder)
            ROOT.gSystem.SetBuildDir(str(folder), True)
            ROOT.gInterpreter.GenerateDictionary(";".join(DICTIONARY_CLASSES), "vector")
        finally:
            os.chdir(cwd)
            ROOT.gSystem.SetBuildDir(old_build or "", True)
    missing = [c for c in DICTIONARY_CLASSES
               if not (ROOT.TClass.GetClass(c) and ROOT.TClass.GetClass(c).HasDictionary())]
    if missing:
        raise RuntimeError(f"ROOT could not build the I/O dictionaries {missing} in {folder} (ACLiC needs a C++ "
                           f"compiler, e.g. g++); write container='rntuple' instead")
    _STATE["dicts"] = True


def _declare(ROOT) -> None:
    if not _STATE["declared"]:
        if not ROOT.gInterpreter.Declare(_CPP):
            raise RuntimeError("ROOT could not compile pcloud's TTree filler")
        _STATE["declared"] = True


def _buffer(a: np.ndarray) -> np.ndarray:
    """cppyy cannot pass a zero-size array as a pointer; an empty column gets a never-read one-element buffer."""
    return a if a.size else np.zeros(1, a.dtype)


def _add(writer, col: Column) -> np.ndarray:
    suffix = {"int": "i", "long": "l", "uint": "ui", "float": "f", "ulong": "ul", "ushort": "us"}[col.kind]
    method = getattr(writer, ("scalar_" if col.depth == 0 else f"vec{col.depth}_") + suffix, None)
    if method is None:
        raise ValueError(f"Column {col.name!r}: no TTree filler for {col.kind} at depth {col.depth}")
    values = _buffer(col.values)
    method(col.name, values, *col.offsets)
    return values


def write_trees(path, trees) -> None:
    """Write ``trees`` = [(name, title, n_entries, [Column, ...]), ...] into a new ROOT file at ``path``."""
    ROOT = import_root()
    ensure_dictionaries(ROOT)
    _declare(ROOT)
    f = ROOT.TFile.Open(str(path), "RECREATE", "", COMPRESSION)
    if not f or f.IsZombie():
        raise OSError(f"{path}: ROOT could not create the file")
    try:
        for name, title, n_entries, columns in trees:
            for c in columns:
                if c.depth and c.offsets[0].size != n_entries + 1:
                    raise ValueError(f"tree {name}: column {c.name!r} has {c.offsets[0].size - 1} entries, expected "
                                     f"{n_entries}")
                if c.depth == 0 and c.values.size != n_entries:
                    raise ValueError(f"tree {name}: column {c.name!r} has {c.values.size} values, expected "
                                     f"{n_entries}")
            w = ROOT.pcloud_mltree.TreeWriter(f, name, title)
            try:
                buffers = [_add(w, c) for c in columns]  # the C++ side reads these arrays during fill()
                w.fill(int(n_entries))
                w.write()
                del buffers  # only now may the arrays be freed
            finally:
                w.detach()
    finally:
        f.Close()
