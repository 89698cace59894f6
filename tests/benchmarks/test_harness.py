"""benchmarks.harness: what every benchmark times with, describes its machine with and prints its tables with."""
import time

from benchmarks import harness


def test_time_calls_warms_up_then_times_at_least_the_calls_and_the_seconds_asked():
    calls, syncs, before = [], [], []
    t = harness.time_calls(lambda: calls.append(1), 3, warmup=2, sync=lambda: syncs.append(1),
                           before_each=lambda: before.append(1))
    assert len(calls) == 5 and len(t.wall) == len(t.cpu) == 3  # the warm-up is not timed
    assert len(syncs) == 4 and len(before) == 3  # a sync after the warm-up and after each timed call
    t = harness.time_calls(lambda: time.sleep(0.01), 1, seconds=0.05)
    # timed until the seconds asked are spent (how many calls that takes depends on the machine's load)
    assert t.elapsed >= 0.05 and len(t.wall) >= 1 and sum(t.wall) <= t.elapsed + 1e-9
    assert abs(t.per_second - len(t.wall) / t.elapsed) < 1e-9


def test_timings_summarise_the_calls():
    t = harness.Timings([3.0, 1.0, 2.0, 10.0], [1.0, 1.0, 2.0, 2.0], elapsed=16.0)
    assert (t.median, t.min, t.max, t.mean, t.cpu_median, t.per_second) == (2.5, 1.0, 10.0, 4.0, 1.5, 0.25)
    assert t.spread() == "2.5 s (1.0-10.0)"


def test_stopwatch_reads_wall_and_cpu_time_of_its_block():
    outer_wall, outer_cpu = time.perf_counter(), time.process_time()
    with harness.stopwatch() as lap:
        # busy until both clocks moved 20 ms inside the block (the process's other threads may move its CPU
        # clock faster than the wall clock)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < 0.02 or time.process_time() - cpu0 < 0.02:
            pass
    assert lap.wall >= 0.02 and lap.cpu >= 0.02
    assert lap.wall <= time.perf_counter() - outer_wall and lap.cpu <= time.process_time() - outer_cpu


def test_the_machine_names_the_cpu_its_cores_and_the_flags_that_pick_kernels():
    m = harness.machine()
    assert m.cpu and m.cpus >= 1
    assert set(m.flags) <= set(harness.RELEVANT_FLAGS) and set(m.flags) <= harness.cpu_flags()
    text = str(m)
    assert m.cpu in text and f"{m.cpus} CPUs" in text and "GPU" in text


def test_peak_memory_is_this_process_s():
    now = harness.rss_kb("VmRSS")
    assert 0 < now <= harness.rss_kb("VmHWM") <= harness.peak_rss_gb() * 1e6


def test_tables_are_markdown(capsys):
    assert harness.table(["a", "b"], [(1, "x"), ("", 2.5)]) == "| a | b |\n|---|---|\n| 1 | x |\n|  | 2.5 |"
    harness.print_table(["a", "b"])
    harness.print_row(1, 2)
    assert capsys.readouterr().out == "| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_mean_and_spread_keep_three_significant_digits_of_small_scores():
    assert harness.mean_spread([0.00349, 0.0032, 0.0037]) == "0.00346 ± 0.00025"  # Fréchet distances of a judge
    assert harness.mean_spread([0.336, 0.33, 0.342]) == "0.336 ± 0.006"  # class IoU: never fewer than 3 places
    assert harness.mean_spread([15.9, 14.9], 1) == "15.4 ± 0.7"
    assert harness.mean_spread([0.0]) == "0.000 ± 0.000"
