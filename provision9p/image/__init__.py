"""Reproducible guest images: a lock of what went into a tree, and deterministic archives.

lock.py      LAB.lock: per guest the exact packages, kernel and mirror Release date
pins.py      a lock's versions in a build: which apply, where each comes from, the check
debstore.py  every .deb a build used, by sha256, served as a local repository
normalize.py what an image leaves out or fixes (machine-id, host keys, logs, times)
archive.py   the tar + zstd stream: written from a MetadataStore, read back with checks
store.py     images kept by digest under the cache; refused when the bytes do not match
build.py     `image build`: a built guest's tree -> an image in the store
diff.py      `image diff`: what differs between two images, path and field
"""
