using Higher.Nn;
using Higher.Optim;

namespace Higher;

/// <summary>
/// Deterministic memory for a region of code: every storage allocated for a tensor created while
/// the scope is current (on its thread and the async flow it began in) goes back to its pool or
/// caching allocator when the scope is disposed, unless something escaped it:
/// <code>
/// using (var scope = Tensor.NewScope())
/// {
///     var loss = F.MseLoss(model.Forward(x), y);  // intermediates live in the scope
///     loss.Backward();                             // the parameters' Grad survives (the parameters outlive the scope)
///     opt.Step();                                  // in-place updates of outer tensors are untouched
///     last = scope.Keep(loss.Detach());            // moved to the enclosing scope (or to the GC when none)
/// }                                                // everything else is released here
/// </code>
/// <para>Survivors, decided at <see cref="Dispose"/>:</para>
/// <list type="bullet">
/// <item>tensors passed to <see cref="Keep(Tensor)"/> or <see cref="Tensor.MoveTo"/> (with their Grad), and the result of <see cref="Run"/>;</item>
/// <item>the Grad of a tensor that outlives the scope (a parameter made outside it), however it was assigned (Backward included);</item>
/// <item>what a module or optimizer passed to <see cref="Keep(Module)"/> / <see cref="Keep(Optimizer)"/> holds at Dispose: parameters, their
/// Grad, buffers (BatchNorm replaces its running statistics with new tensors), optimizer state. An <see cref="Functional.InnerLoopContext"/> is
/// a scope that keeps its model and optimizer so;</item>
/// <item>every storage that was not allocated inside the scope: a view (Reshape, Detach) made inside of a tensor from outside shares its
/// storage, and in-place changes of outer tensors are outer memory.</item>
/// </list>
/// <para>
/// A storage is released only when no surviving tensor views it (views share one storage family). A released tensor, or any view of
/// its storage, throws <see cref="ObjectDisposedException"/> naming it and the scope on its next use, never reads reused memory. A kept
/// tensor keeps its values, not its graph: differentiating through it after the scope reaches released intermediates and throws, so
/// run Backward inside the scope. Scopes nest; survivors move to the enclosing live scope, which then governs them.
/// </para>
/// <para>
/// Threads and tasks: the current scope flows like an <see cref="AsyncLocal{T}"/> (across awaits, into tasks started inside it), and
/// tensors may be created in it from several threads at once. Dispose it once the work inside it has finished; out-of-order disposal
/// is allowed (survivors then move to the nearest enclosing scope that is still live).
/// </para>
/// </summary>
public sealed class TensorScope : IDisposable
{
    private static readonly AsyncLocal<TensorScope?> CurrentScope = new();

    // Scopes begun and not yet disposed, on every thread: while there are none, a new storage has no
    // scope to join, and Adopt skips the flow's AsyncLocal lookup (most ops outside scopes).
    private static int s_live;

    private readonly Lock _gate = new();
    private readonly TensorScope? _outer;
    private readonly List<VersionCounter> _born = [];
    // The families born on the thread that opened the scope (nearly all of them): appended by that
    // thread alone without the lock, one store and a count each (Volatile.Write of the count after the
    // element, and of a grown array before the count, so a reader that reads the count first and then
    // the array sees every element it counts). Families born on other threads go to _born under the lock.
    private readonly int _ownerThread = Environment.CurrentManagedThreadId;
    private VersionCounter[] _ownBorn = new VersionCounter[16];
    private int _ownCount;
    private readonly List<Tensor> _gradRoots = [];
    private readonly List<Module> _modules = [];
    private readonly List<Optimizer> _optimizers = [];
    private volatile bool _disposed;

    private TensorScope(string name, TensorScope? outer)
    {
        Name = name;
        _outer = outer;
    }

    /// <summary>Shown in the error of a released tensor ("released by scope 'inner loop'").</summary>
    public string Name { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>The nearest enclosing scope that is still live (where survivors go), or null.</summary>
    public TensorScope? Outer => Live(_outer);

    /// <summary>The scope that governs tensors created now on this flow, or null (the garbage collector owns them).</summary>
    public static TensorScope? Current => Volatile.Read(ref s_live) == 0 ? null : Live(CurrentScope.Value);

    /// <summary>Number of storages this scope would release now (those it governs that are not yet released).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                int n = 0;
                foreach (var f in _born)
                {
                    if (ReferenceEquals(f.Scope, this) && f.ReleasedBy is null)
                    {
                        n++;
                    }
                }
                int own = Volatile.Read(ref _ownCount);
                var ownBorn = Volatile.Read(ref _ownBorn);
                for (int i = 0; i < own; i++)
                {
                    if (ReferenceEquals(ownBorn[i].Scope, this) && ownBorn[i].ReleasedBy is null)
                    {
                        n++;
                    }
                }
                return n;
            }
        }
    }

    /// <summary>Opens a scope that becomes current on this flow until disposed (see <see cref="Tensor.NewScope"/>).</summary>
    public static TensorScope Begin(string? name = null)
    {
        var scope = new TensorScope(name is null ? "a tensor scope" : $"scope '{name}'", Current);
        Interlocked.Increment(ref s_live);
        CurrentScope.Value = scope;
        return scope;
    }

    /// <summary>Runs <paramref name="body"/> in a new scope and keeps its result (with its Grad); everything else made inside is released.</summary>
    public static Tensor Run(Func<Tensor> body, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        using var scope = Begin(name);
        return scope.Keep(body());
    }

    /// <summary>
    /// Moves <paramref name="tensor"/> (its storage and every view of it, and its Grad) out of this scope to the enclosing live scope,
    /// or to the garbage collector when there is none; returns it. A tensor this scope does not govern is returned unchanged.
    /// </summary>
    public Tensor Keep(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var target = Outer;
        MoveOut(tensor.Version, target);
        if (tensor.PeekGrad is { } g)
        {
            MoveOut(g.Version, target);
        }
        return tensor;
    }

    /// <summary>Keeps every tensor of <paramref name="tensors"/> (see <see cref="Keep(Tensor)"/>) and returns them as a list.</summary>
    public IReadOnlyList<Tensor> Keep(IEnumerable<Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        foreach (var t in list)
        {
            Keep(t);
        }
        return list;
    }

    /// <summary>At Dispose, keeps what <paramref name="module"/> holds then: its parameters, their Grad and its buffers.</summary>
    public Module Keep(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_gate)
        {
            AddOnce(_modules, module);
        }
        return module;
    }

    /// <summary>At Dispose, keeps what <paramref name="optimizer"/> holds then: its parameters, their Grad and its state tensors.</summary>
    public Optimizer Keep(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_gate)
        {
            AddOnce(_optimizers, optimizer);
        }
        return optimizer;
    }

    /// <summary>Releases every storage this scope governs that no survivor views, and makes the enclosing scope current again.</summary>
    public void Dispose()
    {
        List<VersionCounter> born;
        List<Tensor> gradRoots;
        List<Module> modules;
        List<Optimizer> optimizers;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            Interlocked.Decrement(ref s_live);
            int own = Volatile.Read(ref _ownCount);
            var ownBorn = Volatile.Read(ref _ownBorn);
            born = new List<VersionCounter>(own + _born.Count);
            born.AddRange(new ArraySegment<VersionCounter>(ownBorn, 0, own));
            born.AddRange(_born);
            gradRoots = [.. _gradRoots];
            modules = [.. _modules];
            optimizers = [.. _optimizers];
            _ownBorn = [];
            _ownCount = 0;
            _born.Clear();
            _gradRoots.Clear();
        }
        if (ReferenceEquals(CurrentScope.Value, this))
        {
            CurrentScope.Value = Live(_outer);
        }
        var target = Outer;

        var survivors = new HashSet<VersionCounter>(FamilyIdentity.Instance);
        foreach (var m in modules)
        {
            foreach (var p in m.Parameters())
            {
                survivors.Add(p.Version);
                if (p.PeekGrad is { } g)
                {
                    survivors.Add(g.Version);
                }
            }
            foreach (var b in m.Buffers())
            {
                survivors.Add(b.Version);
            }
        }
        foreach (var o in optimizers)
        {
            foreach (var group in o.ParamGroups)
            {
                foreach (var p in group.Params)
                {
                    survivors.Add(p.Version);
                    if (p.PeekGrad is { } g)
                    {
                        survivors.Add(g.Version);
                    }
                }
            }
            foreach (var state in o.State.Values)
            {
                foreach (var t in state.Tensors.Values)
                {
                    survivors.Add(t.Version);
                }
            }
        }
        var liveRoots = new List<Tensor>();
        foreach (var leaf in gradRoots)
        {
            var f = leaf.Version;
            if (f.ReleasedBy is null && (!ReferenceEquals(f.Scope, this) || survivors.Contains(f)) && leaf.PeekGrad is { } g)
            {
                survivors.Add(g.Version);
                liveRoots.Add(leaf);
            }
        }

        List<VersionCounter>? moved = target is null ? null : [];
        foreach (var f in born)
        {
            if (!ReferenceEquals(f.Scope, this) || f.ReleasedBy is not null)
            {
                continue; // moved out since, or released already
            }
            if (survivors.Contains(f))
            {
                f.Scope = target;
                moved?.Add(f);
            }
            else
            {
                f.ReleasedBy = Name;
                f.Storage?.Dispose();
            }
        }
        target?.Inherit(moved!, liveRoots, modules, optimizers);
    }

    /// <summary>Describes the scope.</summary>
    public override string ToString() => $"TensorScope({Name}, {Count} storages{(_disposed ? ", disposed" : "")})";

    /// <summary>A scope for the engine's own temporaries (the intermediate gradients of a backward pass).</summary>
    internal static TensorScope BeginInternal(string name) => Begin(name);

    /// <summary>Releases a temporary the engine made and alone holds (its scope, if any, then skips it).</summary>
    internal static void ReleaseNow(VersionCounter family, string by)
    {
        family.ReleasedBy = by;
        family.Storage?.Dispose();
    }

    /// <summary>Starts the family of a new storage, governed by the current scope.</summary>
    internal static VersionCounter Adopt(IStorage storage)
    {
        var family = new VersionCounter { Storage = storage };
        Tape.Engine.Capture(family);
        if (Volatile.Read(ref s_live) == 0)
        {
            return family;
        }
        var scope = CurrentScope.Value;
        if (scope is not null)
        {
            (scope._disposed ? Live(scope) : scope)?.Add(family);
        }
        return family;
    }

    /// <summary>Called when <paramref name="grad"/> becomes the Grad of <paramref name="owner"/>: if the owner may outlive the gradient's scope, that scope checks at Dispose whether the gradient is still the owner's.</summary>
    internal static void OnGradAssigned(Tensor owner, Tensor grad)
    {
        var scope = grad.Version.Scope;
        if (scope is not null && !ReferenceEquals(scope, owner.Version.Scope))
        {
            scope.AddGradRoot(owner);
        }
    }

    /// <summary>Moves a family governed by this scope or a scope inside it to <paramref name="target"/> (null: the garbage collector).</summary>
    internal void MoveOut(VersionCounter family, TensorScope? target)
    {
        for (var s = family.Scope; s is not null; s = s._outer)
        {
            if (ReferenceEquals(s, this))
            {
                MoveFamily(family, target);
                return;
            }
        }
    }

    internal static void MoveFamily(VersionCounter family, TensorScope? target)
    {
        if (family.ReleasedBy is not null)
        {
            throw new ObjectDisposedException(nameof(Tensor), $"The tensor was released by {family.ReleasedBy}; it cannot move to another scope.");
        }
        if (target is not null)
        {
            ObjectDisposedException.ThrowIf(target._disposed, target);
        }
        family.Scope = target;
        target?.Add(family);
    }

    private static TensorScope? Live(TensorScope? scope)
    {
        while (scope is not null && scope._disposed)
        {
            scope = scope._outer;
        }
        return scope;
    }

    private static void AddOnce<T>(List<T> list, T item) where T : class
    {
        foreach (var x in list)
        {
            if (ReferenceEquals(x, item))
            {
                return;
            }
        }
        list.Add(item);
    }

    private void Add(VersionCounter family)
    {
        if (Environment.CurrentManagedThreadId == _ownerThread)
        {
            if (_disposed)
            {
                family.Scope = null;
                return;
            }
            family.Scope = this;
            var own = _ownBorn;
            int n = _ownCount;
            if (n == own.Length)
            {
                var grown = new VersionCounter[Math.Max(16, n * 2)];
                Array.Copy(own, grown, n);
                Volatile.Write(ref _ownBorn, grown);
                own = grown;
            }
            own[n] = family;
            Volatile.Write(ref _ownCount, n + 1);
            return;
        }
        lock (_gate)
        {
            if (_disposed)
            {
                // Created on another thread as the scope ended: leave it to the enclosing scope or the GC.
                family.Scope = null;
                return;
            }
            family.Scope = this;
            _born.Add(family);
        }
    }

    private void AddGradRoot(Tensor owner)
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                AddOnce(_gradRoots, owner);
            }
        }
    }

    private void Inherit(List<VersionCounter> families, List<Tensor> gradRoots, List<Module> modules, List<Optimizer> optimizers)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                foreach (var f in families)
                {
                    f.Scope = null;
                }
                return;
            }
            _born.AddRange(families);
            foreach (var r in gradRoots)
            {
                AddOnce(_gradRoots, r);
            }
            foreach (var m in modules)
            {
                AddOnce(_modules, m);
            }
            foreach (var o in optimizers)
            {
                AddOnce(_optimizers, o);
            }
        }
    }
}
