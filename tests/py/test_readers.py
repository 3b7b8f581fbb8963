"""The dataset readers against files written by the tools the field uses.

A StaticImageSet file is written with h5py the way neuralpredictors' data pipeline (cajal/neuro_data
save_dict_to_hdf5) writes one, and a FileTree folder with numpy the way neuralpredictors'
convert_static_h5_dataset_to_folder does (also zipped with the zipfile module). `v1sysid info --json` must
report every count, must leave the dataset untouched, and bad inputs must fail with one
'v1sysid: error:' line and a non-zero exit.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import zipfile

import h5py
import numpy as np

EXE = os.environ.get("V1SYSID_EXE", "")

# 30 train, 6 validation, 5 test images x 4 repeats, 3 final_test images x 2 repeats (FileTree only).
N_TRAIN, N_VALIDATION, N_TEST_IMAGES, TEST_REPEATS = 30, 6, 5, 4
N_NEURONS, H, W = 7, 9, 16


def make_recording(final_test=False, seed=0):
    rng = np.random.default_rng(seed)
    tiers = ["train"] * N_TRAIN + ["validation"] * N_VALIDATION
    image_ids = list(range(N_TRAIN + N_VALIDATION))
    for r in range(TEST_REPEATS):
        for k in range(N_TEST_IMAGES):
            tiers.append("test")
            image_ids.append(500 + k)
    if final_test:
        for r in range(2):
            for k in range(3):
                tiers.append("final_test")
                image_ids.append(900 + k)
    image_ids = np.array(image_ids, dtype=np.int64)
    order = rng.permutation(len(tiers))  # file order carries no meaning (SENSORIUM README)
    tiers = [tiers[i] for i in order]
    image_ids = image_ids[order]
    pixels = {i: rng.uniform(0, 255, (H, W)).astype(np.float32) for i in np.unique(image_ids)}
    images = np.stack([pixels[i][None] for i in image_ids])  # (N, 1, H, W)
    responses = rng.gamma(1.0, 1.0, (len(tiers), N_NEURONS)).astype(np.float32)
    return tiers, image_ids, images, responses


def expected_counts(tiers):
    return {t: tiers.count(t) for t in sorted(set(tiers))}


def write_static_image_set(path, tiers, image_ids, images, responses):
    n = len(tiers)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("responses", data=responses)
        f.create_dataset("behavior", data=np.zeros((n, 3), np.float32))
        f.create_dataset("pupil_center", data=np.zeros((n, 2), np.float32))
        f.create_dataset("tiers", data=np.array(tiers, dtype="S"))
        f.create_dataset("types", data=np.array(["stimulus.Frame"] * n, dtype="S"))
        f.create_dataset("condition_hashes", data=np.array(["h%019d" % i for i in image_ids], dtype="S"))
        f.create_dataset("trial_idx", data=np.arange(n, dtype=np.uint32))
        info = f.create_group("item_info")
        info.create_dataset("frame_image_id", data=image_ids)
        info.create_dataset("frame_image_class", data=np.array(["imagenet"] * n, dtype="S"))
        info.create_dataset("frame_trial_ts", data=np.array(["Timestamp('2018-01-01')"] * n, dtype="S"))
        neurons = f.create_group("neurons")
        neurons.create_dataset("unit_ids", data=np.arange(1, N_NEURONS + 1, dtype=np.uint16))
        neurons.create_dataset("animal_ids", data=np.full(N_NEURONS, 20457, np.uint16))
        neurons.create_dataset("sessions", data=np.full(N_NEURONS, 5, np.uint8))
        neurons.create_dataset("scan_idx", data=np.full(N_NEURONS, 9, np.uint8))
        neurons.create_dataset("layer", data=np.array(["L2/3"] * N_NEURONS, dtype="S"))
        neurons.create_dataset("area", data=np.array(["V1"] * N_NEURONS, dtype="S"))
        neurons.create_dataset("cell_motor_coordinates", data=np.ones((N_NEURONS, 3), np.float32))
        train = np.array([t == "train" for t in tiers])
        for subset in ("all", "stimulus.Frame"):
            g = f.create_group("statistics/images/" + subset)
            for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max),
                             ("median", np.median)):
                g.create_dataset(name, data=np.float32(fn(images[train])))  # 0-d, as neuro_data stores it
            g = f.create_group("statistics/responses/" + subset)
            g.create_dataset("mean", data=responses[train].mean(0))
            g.create_dataset("std", data=responses[train].std(0, ddof=1))


def write_file_tree(root, tiers, image_ids, images, responses, save=np.save):
    for key in ("images", "responses", "behavior", "pupil_center"):
        os.makedirs(os.path.join(root, "data", key))
    for i in range(len(tiers)):
        save(os.path.join(root, "data/images/%d.npy" % i), images[i])
        save(os.path.join(root, "data/responses/%d.npy" % i), responses[i])
        save(os.path.join(root, "data/behavior/%d.npy" % i), np.zeros(3, np.float32))
        save(os.path.join(root, "data/pupil_center/%d.npy" % i), np.zeros(2, np.float32))
    trials = os.path.join(root, "meta/trials")
    neurons = os.path.join(root, "meta/neurons")
    os.makedirs(trials)
    os.makedirs(neurons)
    save(os.path.join(trials, "tiers.npy"), np.array(tiers))  # '<U10'
    save(os.path.join(trials, "frame_image_id.npy"), image_ids)
    save(os.path.join(trials, "trial_idx.npy"), np.array(["%08x" % (i * 2654435761 % 2**32) for i in range(len(tiers))]))
    save(os.path.join(neurons, "unit_ids.npy"), np.arange(N_NEURONS, dtype=np.uint16))
    save(os.path.join(neurons, "area.npy"), np.array(["V1"] * N_NEURONS))
    save(os.path.join(neurons, "cell_motor_coordinates.npy"), np.ones((N_NEURONS, 3)))
    train = np.array([t == "train" for t in tiers])
    for subset in ("all", "stimulus_Frame"):
        d = os.path.join(root, "meta/statistics/images", subset)
        os.makedirs(d)
        save(os.path.join(d, "mean.npy"), np.float32(images[train].mean()))  # 0-d
        save(os.path.join(d, "std.npy"), np.float32(images[train].std()))
        d = os.path.join(root, "meta/statistics/responses", subset)
        os.makedirs(d)
        save(os.path.join(d, "std.npy"), responses[train].std(0, ddof=1))


def zip_tree(root, zip_path):
    prefix = os.path.basename(root.rstrip("/"))
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for folder, _, files in os.walk(root):
            for name in files:
                full = os.path.join(folder, name)
                z.write(full, os.path.join(prefix, os.path.relpath(full, root)))


def snapshot(folder):
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            full = os.path.join(base, name)
            st = os.stat(full)
            out[os.path.relpath(full, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def run_info(path, *extra):
    return subprocess.run([EXE, "info", *extra, path], capture_output=True, text=True, timeout=120)


class ReadersTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(EXE and os.path.exists(EXE), "set V1SYSID_EXE to the built v1sysid (ctest does)")
        self.tmp = tempfile.mkdtemp(prefix="v1sysid-py-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def info_json(self, path):
        result = run_info(path, "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def check_counts(self, info, tiers, data_key):
        self.assertEqual(info["trials"], expected_counts(tiers))
        self.assertEqual(info["neurons"], N_NEURONS)
        self.assertEqual(info["image_shape"], [1, H, W])
        self.assertEqual(info["test_images"], N_TEST_IMAGES)
        self.assertEqual(info["test_repeats"], TEST_REPEATS)
        self.assertEqual(info["data_key"], data_key)
        self.assertTrue(info["has_cortical_coordinates"])
        self.assertFalse(info["has_ground_truth"])

    def test_static_image_set_written_by_h5py(self):
        tiers, ids, images, responses = make_recording()
        path = os.path.join(self.tmp, "static20457-5-9-preproc0.h5")
        write_static_image_set(path, tiers, ids, images, responses)
        before = snapshot(self.tmp)
        info = self.info_json(path)
        self.check_counts(info, tiers, "20457-5-9-0")
        self.assertEqual(info["source"], path)
        self.assertNotIn("final_test", info["trials"])
        self.assertEqual(snapshot(self.tmp), before)
        text = run_info(path)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn("train %d, validation %d, test %d" % (N_TRAIN, N_VALIDATION, N_TEST_IMAGES * TEST_REPEATS),
                      text.stdout)

    def test_file_tree_folder_and_zip_written_by_numpy(self):
        tiers, ids, images, responses = make_recording(final_test=True, seed=1)
        root = os.path.join(self.tmp, "static22564-2-13-preproc0")
        write_file_tree(root, tiers, ids, images, responses)
        before = snapshot(self.tmp)
        info = self.info_json(root)
        self.check_counts(info, tiers, "22564-2-13-0")
        self.assertEqual(info["trials"]["final_test"], 6)
        self.assertEqual(info["format"], "filetree")
        self.assertEqual(snapshot(self.tmp), before, "the reader changed the dataset folder")
        self.assertFalse(os.path.exists(os.path.join(root, "config.json")))

        zips = os.path.join(self.tmp, "zips")
        os.makedirs(zips)
        zip_path = os.path.join(zips, "static22564-2-13-preproc0.zip")
        zip_tree(root, zip_path)
        before = snapshot(zips)
        info = self.info_json(zip_path)
        self.check_counts(info, tiers, "22564-2-13-0")
        self.assertEqual(info["format"], "filetree-zip")
        self.assertEqual(snapshot(zips), before, "the reader wrote next to the archive")

    def assert_fails_cleanly(self, path, *needles):
        result = run_info(path, "--json")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("v1sysid: error: "), lines[0])
        for needle in needles:
            self.assertIn(needle, lines[0])

    def test_bad_static_image_sets_fail_cleanly(self):
        tiers, ids, images, responses = make_recording()

        def variant(name, **changes):
            path = os.path.join(self.tmp, name + ".h5")
            write_static_image_set(path, changes.get("tiers", tiers), changes.get("ids", ids),
                                   changes.get("images", images), changes.get("responses", responses))
            return path

        path = variant("no_responses")
        with h5py.File(path, "a") as f:
            del f["responses"]
        self.assert_fails_cleanly(path, "responses", path)
        path = variant("short")
        with h5py.File(path, "a") as f:
            del f["responses"]
            f.create_dataset("responses", data=responses[:-1])
        self.assert_fails_cleanly(path, "length mismatch", "responses")
        self.assert_fails_cleanly(variant("tier", tiers=["trian"] + tiers[1:]), "unknown tier name 'trian'")
        no_val = ["train" if t == "validation" else t for t in tiers]
        self.assert_fails_cleanly(variant("noval", tiers=no_val), "validation")
        nan = images.copy()
        nan[3, 0, 1, 1] = np.nan
        self.assert_fails_cleanly(variant("nan", images=nan), "NaN", "images[3]")
        good = variant("good")
        with open(good, "rb") as f:
            data = f.read()
        cut = os.path.join(self.tmp, "cut.h5")
        with open(cut, "wb") as f:
            f.write(data[: len(data) // 3])
        self.assert_fails_cleanly(cut, "cut.h5")
        text = os.path.join(self.tmp, "notes.h5")
        with open(text, "w") as f:
            f.write("not hdf5\n")
        self.assert_fails_cleanly(text, "not an HDF5 file")

    def test_bad_file_trees_fail_cleanly(self):
        tiers, ids, images, responses = make_recording(seed=2)

        def tree(name):
            root = os.path.join(self.tmp, name)
            write_file_tree(root, tiers, ids, images, responses)
            return root

        root = tree("pickled")
        np.save(os.path.join(root, "meta/trials/tiers.npy"), np.array(tiers, dtype=object), allow_pickle=True)
        self.assert_fails_cleanly(root, "pickled", "tiers.npy")
        root = tree("truncated")
        target = os.path.join(root, "data/images/4.npy")
        with open(target, "rb") as f:
            data = f.read()
        with open(target, "wb") as f:
            f.write(data[:-7])
        self.assert_fails_cleanly(root, "truncated", "data/images/4.npy")
        root = tree("header")
        with open(os.path.join(root, "data/responses/2.npy"), "wb") as f:
            f.write(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4' ")
        self.assert_fails_cleanly(root, "data/responses/2.npy")
        root = tree("missing")
        os.remove(os.path.join(root, "data/responses/0.npy"))
        self.assert_fails_cleanly(root, "data/responses")
        root = tree("fortran")
        np.save(os.path.join(root, "data/images/1.npy"), np.asfortranarray(np.ones((2, H, W), np.float32)))
        self.assert_fails_cleanly(root, "data/images/1.npy")

    def test_damaged_zip_entries_fail_cleanly(self):
        # A byte flipped in transfer inside one entry's data: the zip reader used to stop at the declared size,
        # before libzip checks the CRC, and trained on the damaged values with exit 0.
        tiers, ids, images, responses = make_recording(seed=3)
        root = os.path.join(self.tmp, "static22564-2-13-preproc0")
        write_file_tree(root, tiers, ids, images, responses)
        entry = "static22564-2-13-preproc0/data/responses/6.npy"
        for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            path = os.path.join(self.tmp, "damaged-%d.zip" % compression)
            with zipfile.ZipFile(path, "w", compression=compression) as z:
                for folder, _, files in os.walk(root):
                    for name in files:
                        full = os.path.join(folder, name)
                        z.write(full, os.path.join("static22564-2-13-preproc0", os.path.relpath(full, root)))
                info = z.getinfo(entry)
            self.assertEqual(run_info(path).returncode, 0)
            with open(path, "rb") as f:
                data = bytearray(f.read())
            start = info.header_offset + 30 + len(entry.encode()) + len(info.extra)
            data[start + info.compress_size - 5] ^= 0x5A
            with open(path, "wb") as f:
                f.write(data)
            self.assert_fails_cleanly(path, path + ":" + entry, "archive is damaged")


if __name__ == "__main__":
    unittest.main()
