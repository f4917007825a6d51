import gc

from threadweaver.gc_tuning import SERVING_GEN0_THRESHOLD, tune_for_serving


def test_tune_for_serving_freezes_startup_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        tune_for_serving()
        assert gc.get_threshold() == (SERVING_GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 1000  # the imports' objects, at least
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
