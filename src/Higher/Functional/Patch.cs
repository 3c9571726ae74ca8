using Higher.Nn;

namespace Higher.Functional;

/// <summary>higher.patch: making modules stateless.</summary>
public static class Patch
{
    /// <summary>
    /// A stateless view of <paramref name="module"/> with time-0 fast weights.
    /// copyInitialWeights true: the time-0 weights are detached copies, so gradients reach
    /// <c>fmodel.Parameters(0)</c> and not the module. False: they are the module's own parameters,
    /// on the graph, so an outer backward fills the module's <c>Grad</c> (MAML).
    /// </summary>
    public static FunctionalModule Monkeypatch(Module module, Device? device = null, bool copyInitialWeights = true, bool trackHigherGrads = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        IReadOnlyList<Tensor> initial = copyInitialWeights
            ? Utils.GetFuncParams(module, device, safeCopy: true)
            : module.Parameters().Select(p => device is { } d ? p.To(d) : p).ToList();
        return new FunctionalModule(module, initial, trackHigherGrads, device);
    }

    /// <summary>A stateless view whose time-0 weights are the module's own parameters (higher's make_functional).</summary>
    public static FunctionalModule MakeFunctional(Module module) => Monkeypatch(module, copyInitialWeights: false);

    /// <summary>Copies the buffers of <paramref name="module"/> into <paramref name="fmodel"/> (higher's buffer_sync).</summary>
    public static void BufferSync(Module module, FunctionalModule fmodel, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(fmodel);
        fmodel.SyncBuffers(module, device);
    }
}

/// <summary>higher.utils.</summary>
public static class Utils
{
    /// <summary>
    /// Detached copies of the module's parameters that require grad where the originals do
    /// (safeCopy false: detached views sharing storage, as higher's safe_copy=False).
    /// </summary>
    public static List<Tensor> GetFuncParams(Module module, Device? device = null, bool safeCopy = true)
    {
        ArgumentNullException.ThrowIfNull(module);
        var list = new List<Tensor>();
        using var _ = Autograd.NoGrad();
        foreach (var p in module.Parameters())
        {
            var t = p.Detach();
            if (device is { } d)
            {
                t = t.To(d);
            }
            if (safeCopy || device is not null)
            {
                t = t.Clone();
            }
            list.Add(t.Detach().WithRequiresGrad(p.RequiresGrad));
        }
        return list;
    }

    /// <summary>The leaves of a nested structure of enumerables, in order (strings are leaves).</summary>
    public static List<object?> Flatten(object? nested)
    {
        var result = new List<object?>();
        Walk(nested, result);
        return result;

        static void Walk(object? x, List<object?> into)
        {
            if (x is System.Collections.IEnumerable e and not string)
            {
                foreach (var item in e)
                {
                    Walk(item, into);
                }
            }
            else
            {
                into.Add(x);
            }
        }
    }
}
